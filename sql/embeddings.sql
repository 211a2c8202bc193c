-- Load one model version's embeddings from S3 into RDS PostgreSQL + pgvector, atomically.
--
-- Usage (psql 13+, from the repository root so that \ir finds sql/pgvector.sql):
--
--   psql "host=<rds-endpoint> dbname=recsys user=<user> sslmode=require" \
--        -v bucket=recsys-ml-artifacts -v version=20261126T154500Z-1a2b3c4d \
--        -v region=us-east-1 -v dimension=64 -f sql/embeddings.sql
--
-- Parameters (psql variables):
--   bucket      required  the ml-artifacts bucket
--   version     required  model version: reads s3://<bucket>/models/<version>/{item,user}_embeddings.csv
--                         and rated_items.csv (versions trained before rated_items.csv existed: retrain)
--   region      required  the bucket's region
--   dimension   required  embedding_dim from models/<version>/manifest.json
--   hnsw_m, hnsw_ef_construction   optional, default 16 / 128 (the loader's defaults, recsys.contracts)
--   maintenance_work_mem           optional: this session's value for the HNSW builds (default: the DB
--                                  parameter group's, sized for the index in terraform/modules/vector-db;
--                                  the graph is built in memory when it fits: ~2x the index size)
--   ef_search                      optional: the hnsw.ef_search readers use for this version; default:
--                                  measured, the smallest reaching recall@10 :ef_search_recall (0.95) on
--                                  200 customer vectors against exact search (recsys_ef_search_recall)
--   local_csv_dir  optional, for testing without aws_s3: read <dir>/item_embeddings.csv,
--                  <dir>/user_embeddings.csv and <dir>/rated_items.csv with \copy instead of
--                  aws_s3.table_import_from_s3
--
-- The RDS instance needs the s3Import role feature (terraform/modules/vector-db) for
-- aws_s3.table_import_from_s3 with no credentials argument.
--
-- Same design as `recsys load-embeddings` (src/recsys/pipeline/vector_load.py): load into fresh
-- tables item_emb_<v> / user_emb_<v> / user_rated_<v>, build the HNSW indexes, then in ONE
-- transaction drop the old tables, rename the new ones to item_emb / user_emb / user_rated and
-- record the version in live_model.
-- Readers never see a half-loaded table or items of one version with users of another.
-- Re-running a version that is already live does nothing. Any error stops the script
-- (ON_ERROR_STOP) before the switch: the live version is untouched.

\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

-- ---- parameters ------------------------------------------------------------------------------
\if :{?bucket}
\else
  \warn 'embeddings.sql: missing -v bucket=<ml-artifacts bucket>'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: missing psql variable bucket'; END $$;
\endif
\if :{?version}
\else
  \warn 'embeddings.sql: missing -v version=<model version>'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: missing psql variable version'; END $$;
\endif
\if :{?region}
\else
  \warn 'embeddings.sql: missing -v region=<bucket region>'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: missing psql variable region'; END $$;
\endif
\if :{?dimension}
\else
  \warn 'embeddings.sql: missing -v dimension=<embedding_dim from the manifest>'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: missing psql variable dimension'; END $$;
\endif
\if :{?hnsw_m}
\else
  \set hnsw_m 16
\endif
\if :{?hnsw_ef_construction}
\else
  \set hnsw_ef_construction 128
\endif
\if :{?ef_search_recall}
\else
  \set ef_search_recall 0.95
\endif

SELECT :'version' ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$' AS version_ok,
       :'dimension' ~ '^[1-9][0-9]{0,4}$' AS dimension_ok \gset
\if :version_ok
\else
  \warn 'embeddings.sql: -v version must be letters, digits, ".", "_", "-" (at most 41), e.g. 20261126T154500Z-1a2b3c4d'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: invalid psql variable version'; END $$;
\endif
\if :dimension_ok
\else
  \warn 'embeddings.sql: -v dimension must be a positive integer'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: invalid psql variable dimension'; END $$;
\endif

-- ---- schema and the loader lock ------------------------------------------------------------
CREATE EXTENSION IF NOT EXISTS vector;
\if :{?local_csv_dir}
\else
  CREATE EXTENSION IF NOT EXISTS aws_s3 CASCADE;
\endif
\ir pgvector.sql

-- One load at a time (the same key as the Python loader); released when the session ends.
SELECT pg_advisory_lock(hashtext('recsys.load_embeddings')) AS locked \gset

SELECT EXISTS (SELECT 1 FROM live_model WHERE version = :'version') AS already_live \gset
\if :already_live
  \echo 'version' :version 'is already live: nothing to do'
  \quit
\endif

-- Staged table names: the version folded to an identifier (the loader's staged_names()).
SELECT 'item_emb_' || lower(regexp_replace(:'version', '[^A-Za-z0-9]+', '_', 'g')) AS item_stage,
       'user_emb_' || lower(regexp_replace(:'version', '[^A-Za-z0-9]+', '_', 'g')) AS user_stage,
       'user_rated_' || lower(regexp_replace(:'version', '[^A-Za-z0-9]+', '_', 'g')) AS rated_stage,
       'models/' || :'version' || '/item_embeddings.csv' AS item_key,
       'models/' || :'version' || '/user_embeddings.csv' AS user_key,
       'models/' || :'version' || '/rated_items.csv' AS rated_key,
       's3://' || :'bucket' || '/models/' || :'version' || '/' AS source_uri \gset
\set item_stage_pkey :item_stage '_pkey'
\set user_stage_pkey :user_stage '_pkey'
\set rated_stage_pkey :rated_stage '_pkey'
\set item_stage_hnsw :item_stage '_hnsw'
\set user_stage_hnsw :user_stage '_hnsw'

-- ---- load into fresh tables (leftovers of an interrupted load are replaced) ----------------
DROP TABLE IF EXISTS :"item_stage", :"user_stage", :"rated_stage";
CREATE TABLE :"item_stage" (
    id        varchar PRIMARY KEY,
    embedding vector(:dimension) NOT NULL
);
CREATE TABLE :"user_stage" (
    id        integer PRIMARY KEY,
    embedding vector(:dimension) NOT NULL
);
CREATE TABLE :"rated_stage" (
    user_id integer NOT NULL,
    item_id varchar NOT NULL,
    PRIMARY KEY (user_id, item_id)
);

\if :{?local_csv_dir}
  -- Test variant: psql does not expand variables inside \copy, so build the command first.
  \set item_csv :local_csv_dir '/item_embeddings.csv'
  \set user_csv :local_csv_dir '/user_embeddings.csv'
  \set rated_csv :local_csv_dir '/rated_items.csv'
  \set item_copy '\\copy ' :item_stage ' (id, embedding) FROM ' :'item_csv' ' WITH (FORMAT csv, HEADER true)'
  \set user_copy '\\copy ' :user_stage ' (id, embedding) FROM ' :'user_csv' ' WITH (FORMAT csv, HEADER true)'
  \set rated_copy '\\copy ' :rated_stage ' (user_id, item_id) FROM ' :'rated_csv' ' WITH (FORMAT csv, HEADER true)'
  :item_copy
  :user_copy
  :rated_copy
\else
  SELECT aws_s3.table_import_from_s3(
      :'item_stage', 'id,embedding', '(format csv, header true)',
      aws_commons.create_s3_uri(:'bucket', :'item_key', :'region'));
  SELECT aws_s3.table_import_from_s3(
      :'user_stage', 'id,embedding', '(format csv, header true)',
      aws_commons.create_s3_uri(:'bucket', :'user_key', :'region'));
  SELECT aws_s3.table_import_from_s3(
      :'rated_stage', 'user_id,item_id', '(format csv, header true)',
      aws_commons.create_s3_uri(:'bucket', :'rated_key', :'region'));
\endif

SELECT (SELECT count(*) FROM :"item_stage") AS item_count,
       (SELECT count(*) FROM :"user_stage") AS user_count \gset
SELECT :item_count > 0 AND :user_count > 0 AS has_rows \gset
\if :has_rows
\else
  \warn 'embeddings.sql: version' :version 'has' :item_count 'item and' :user_count 'user embeddings: refusing an empty model'
  DO $$ BEGIN RAISE EXCEPTION 'embeddings.sql: empty embeddings file'; END $$;
\endif
\echo 'imported' :item_count 'item and' :user_count 'user embeddings of version' :version

-- ---- HNSW indexes (cosine), built before readers can see the tables ------------------------
\if :{?maintenance_work_mem}
  SET maintenance_work_mem = :'maintenance_work_mem';
\endif
CREATE INDEX :"item_stage_hnsw" ON :"item_stage"
    USING hnsw (embedding vector_cosine_ops) WITH (m = :hnsw_m, ef_construction = :hnsw_ef_construction);
CREATE INDEX :"user_stage_hnsw" ON :"user_stage"
    USING hnsw (embedding vector_cosine_ops) WITH (m = :hnsw_m, ef_construction = :hnsw_ef_construction);
ANALYZE :"item_stage";
ANALYZE :"user_stage";
ANALYZE :"rated_stage";
SELECT format('built HNSW indexes: m %s ef_construction %s (items %s, users %s: size shared_buffers '
              'for them, terraform/modules/vector-db)', :hnsw_m, :hnsw_ef_construction,
              pg_size_pretty(pg_relation_size(:'item_stage_hnsw')),
              pg_size_pretty(pg_relation_size(:'user_stage_hnsw'))) AS built \gset
\echo :built

-- ---- the ef_search readers use for this version ---------------------------------------------
\if :{?ef_search}
\else
  -- The function returns the candidates in increasing order, stopping at the first that reaches the target.
  SELECT max(ef_search) AS ef_search,
         format('ef_search %s: measured recall@10 %s (target %s)', max(ef_search),
                round((array_agg(recall ORDER BY ef_search DESC))[1]::numeric, 3), :ef_search_recall) AS measured
  FROM recsys_ef_search_recall(:'item_stage', :'user_stage', :ef_search_recall) \gset
  \echo :measured
\endif

-- ---- the switch: one transaction ------------------------------------------------------------
-- Lock order live_model, user_emb, item_emb, user_rated is the readers' order too (vector_store.consistent_read).
BEGIN;
LOCK TABLE live_model, user_emb, item_emb, user_rated IN ACCESS EXCLUSIVE MODE;
DROP TABLE item_emb;
DROP TABLE user_emb;
DROP TABLE user_rated;
ALTER TABLE :"item_stage" RENAME TO item_emb;
ALTER TABLE :"user_stage" RENAME TO user_emb;
ALTER TABLE :"rated_stage" RENAME TO user_rated;
ALTER INDEX :"item_stage_pkey" RENAME TO item_emb_pkey;
ALTER INDEX :"user_stage_pkey" RENAME TO user_emb_pkey;
ALTER INDEX :"rated_stage_pkey" RENAME TO user_rated_pkey;
ALTER INDEX :"item_stage_hnsw" RENAME TO item_emb_embedding_hnsw;
ALTER INDEX :"user_stage_hnsw" RENAME TO user_emb_embedding_hnsw;
INSERT INTO live_model (singleton, version, dimension, item_count, user_count,
                        hnsw_m, hnsw_ef_construction, source_uri, loaded_at, ef_search)
VALUES (true, :'version', :dimension, :item_count, :user_count,
        :hnsw_m, :hnsw_ef_construction, :'source_uri', now(), :ef_search)
ON CONFLICT (singleton) DO UPDATE SET
    version = EXCLUDED.version, dimension = EXCLUDED.dimension,
    item_count = EXCLUDED.item_count, user_count = EXCLUDED.user_count,
    hnsw_m = EXCLUDED.hnsw_m, hnsw_ef_construction = EXCLUDED.hnsw_ef_construction,
    source_uri = EXCLUDED.source_uri, loaded_at = EXCLUDED.loaded_at, ef_search = EXCLUDED.ef_search;
COMMIT;

\echo 'version' :version 'is live'
