-- Serving schema for PostgreSQL + pgvector (no aws_s3): what `recsys load-embeddings` applies
-- before every load, and what sql/embeddings.sql includes on RDS. Idempotent.
--
-- item_emb / user_emb / user_rated are the tables readers query. Each model version is loaded into
-- fresh tables item_emb_<v> / user_emb_<v> / user_rated_<v> with vector(D) of that model's dimension and their HNSW
-- indexes, then swapped in by name in ONE transaction that also updates live_model (see
-- docs/vectordb.md). The tables created here are empty placeholders so that readers work (and
-- find no model) before the first load; their vector column has no dimension yet.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS item_emb (
    id        varchar PRIMARY KEY,       -- productCode
    embedding vector  NOT NULL
);

CREATE TABLE IF NOT EXISTS user_emb (
    id        integer PRIMARY KEY,       -- customerNumber
    embedding vector  NOT NULL
);

-- Every known customer's rated products (rated_items.csv of the live version): what the API's
-- exclude_rated removes, inside the k-NN query. Swapped in with the embedding tables.
CREATE TABLE IF NOT EXISTS user_rated (
    user_id integer NOT NULL,           -- customerNumber
    item_id varchar NOT NULL,           -- productCode
    PRIMARY KEY (user_id, item_id)
);

-- The model version readers are served: at most one row, replaced in the switch transaction.
CREATE TABLE IF NOT EXISTS live_model (
    singleton            boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version              text        NOT NULL,
    dimension            integer     NOT NULL CHECK (dimension > 0),
    item_count           integer     NOT NULL,
    user_count           integer     NOT NULL,
    hnsw_m               integer     NOT NULL,
    hnsw_ef_construction integer     NOT NULL,
    source_uri           text        NOT NULL,   -- s3://<artifacts>/models/<version>/
    loaded_at            timestamptz NOT NULL DEFAULT now()
);
