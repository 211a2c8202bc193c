-- Least-privilege roles of the vector DB. Run as the master user (RDS) or the local superuser, after
-- sql/pgvector.sql; idempotent. The `DatabaseRoles` stage of the pipeline runs both at every run
-- (recsys.pipeline.db_roles) and then sets the roles' passwords from their secrets; by hand:
--   psql -f sql/pgvector.sql -f sql/roles.sql
--   psql -c "ALTER ROLE recsys_loader LOGIN PASSWORD '...'" -c "ALTER ROLE recsys_serving LOGIN PASSWORD '...'"
--
-- recsys_loader: creates, fills and swaps the versioned tables (item_emb_<v>, user_emb_<v>, user_rated_<v>)
--   and owns the live ones and live_model, so its switch can drop and rename them; it can read nothing
--   it does not own. recsys_serving: reads the live tables and live_model, writes nothing. Tables the
--   loader creates are readable by the serving role (default privileges), so a switched-in version is too.
-- No one connects as the master at run time (the Lambdas, the API and the pipeline tasks use these).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recsys_loader') THEN
        CREATE ROLE recsys_loader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recsys_serving') THEN
        CREATE ROLE recsys_serving NOLOGIN;
    END IF;
END
$$;

-- The master keeps replacing the schema's function (sql/pgvector.sql) after handing it to the loader: on RDS
-- it is no superuser, so it needs the loader's ownership rights (PostgreSQL 16+: membership, INHERIT).
GRANT recsys_loader TO CURRENT_USER;

-- Neither role inherits what PUBLIC may do in this schema beyond using it.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO recsys_serving;
GRANT USAGE, CREATE ON SCHEMA public TO recsys_loader;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO recsys_loader, recsys_serving', current_database());
END
$$;

-- The serving schema (sql/pgvector.sql) belongs to the loader: its switch drops and renames these.
ALTER TABLE item_emb OWNER TO recsys_loader;
ALTER TABLE user_emb OWNER TO recsys_loader;
ALTER TABLE user_rated OWNER TO recsys_loader;
ALTER TABLE live_model OWNER TO recsys_loader;
ALTER FUNCTION recsys_ef_search_recall(regclass, regclass, double precision, integer, integer, integer[])
    OWNER TO recsys_loader;
DO $$  -- leftovers of a load interrupted before the roles existed
DECLARE staged record;
BEGIN
    FOR staged IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND c.relkind = 'r'
                    AND c.relname ~ '^(item_emb|user_emb|user_rated)_[a-z0-9_]+$' LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO recsys_loader', staged.relname);
    END LOOP;
END
$$;

GRANT SELECT ON item_emb, user_emb, user_rated, live_model TO recsys_serving;
ALTER DEFAULT PRIVILEGES FOR ROLE recsys_loader IN SCHEMA public GRANT SELECT ON TABLES TO recsys_serving;
REVOKE EXECUTE ON FUNCTION recsys_ef_search_recall(regclass, regclass, double precision, integer, integer, integer[])
    FROM PUBLIC;
