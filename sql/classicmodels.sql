-- MySQL source schema: the shape of the `classicmodels` sample database, plus `ratings`.
-- Applied by the seeder (`recsys seed`) when missing and by the MySQL container at first start.
-- Runs inside whichever database the connection selected (MYSQL_DATABASE, default classicmodels).
-- Constraints are unnamed on purpose: the seeder creates these tables as <table>__staging beside the
-- live ones and swaps them in with RENAME TABLE. Constraint names are unique per database, and the
-- generated ones (<table>_ibfk_<n>) follow the table through the rename.

CREATE TABLE IF NOT EXISTS productlines (
  productLine     VARCHAR(50)   NOT NULL,
  textDescription VARCHAR(4000) DEFAULT NULL,
  PRIMARY KEY (productLine)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS products (
  productCode        VARCHAR(15)   NOT NULL,
  productName        VARCHAR(70)   NOT NULL,
  productLine        VARCHAR(50)   NOT NULL,
  productScale       VARCHAR(10)   NOT NULL,
  productVendor      VARCHAR(50)   NOT NULL,
  productDescription TEXT          NOT NULL,
  quantityInStock    SMALLINT      NOT NULL,
  buyPrice           DECIMAL(10,2) NOT NULL,
  MSRP               DECIMAL(10,2) NOT NULL,
  PRIMARY KEY (productCode),
  KEY productLine (productLine),
  FOREIGN KEY (productLine) REFERENCES productlines (productLine)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS customers (
  customerNumber         INT           NOT NULL,
  customerName           VARCHAR(50)   NOT NULL,
  contactLastName        VARCHAR(50)   NOT NULL,
  contactFirstName       VARCHAR(50)   NOT NULL,
  phone                  VARCHAR(50)   NOT NULL,
  addressLine1           VARCHAR(50)   NOT NULL,
  addressLine2           VARCHAR(50)   DEFAULT NULL,
  city                   VARCHAR(50)   NOT NULL,
  state                  VARCHAR(50)   DEFAULT NULL,
  postalCode             VARCHAR(15)   DEFAULT NULL,
  country                VARCHAR(50)   NOT NULL,
  salesRepEmployeeNumber INT           DEFAULT NULL,
  creditLimit            DECIMAL(10,2) DEFAULT NULL,
  PRIMARY KEY (customerNumber)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS ratings (
  customerNumber INT         NOT NULL,
  productCode    VARCHAR(15) NOT NULL,
  productRating  TINYINT     NOT NULL,
  PRIMARY KEY (customerNumber, productCode),
  KEY productCode (productCode),
  FOREIGN KEY (customerNumber) REFERENCES customers (customerNumber),
  FOREIGN KEY (productCode) REFERENCES products (productCode),
  CHECK (productRating BETWEEN 1 AND 5)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Written last by the seeder: the arguments of the seeding that produced these tables, so a rerun
-- with the same arguments is a no-op and the planted truth can be regenerated from them.
CREATE TABLE IF NOT EXISTS seed_metadata (
  id         TINYINT      NOT NULL DEFAULT 1,
  customers  INT          NOT NULL,
  products   INT          NOT NULL,
  ratings    INT          NOT NULL,
  seed       INT          NOT NULL,
  generator  VARCHAR(20)  NOT NULL,
  attribute_share DOUBLE  NOT NULL,  -- share of taste variance planted as a function of country and creditLimit
  seeded_at  TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
