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
    loaded_at            timestamptz NOT NULL DEFAULT now(),
    -- The hnsw.ef_search readers use for this version (set per transaction): the smallest value whose
    -- measured recall@10 reaches the target (recsys_ef_search_recall below). NULL (versions loaded
    -- before the column existed): readers use their built-in default.
    ef_search            integer     CHECK (ef_search BETWEEN 1 AND 1000)
);
-- Databases created before ef_search existed get the column once. Checked first: ALTER TABLE would
-- take an ACCESS EXCLUSIVE lock on every load, waiting for (and queueing) the readers.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'live_model'::regclass AND attname = 'ef_search' AND NOT attisdropped) THEN
        ALTER TABLE live_model ADD COLUMN ef_search integer CHECK (ef_search BETWEEN 1 AND 1000);
    END IF;
END
$$;

-- Recall@k of the HNSW index on items(embedding) at increasing hnsw.ef_search, against exact
-- search, with a fixed sample of the customers' vectors (users) as queries: one row per candidate
-- measured (its recall and the standard error of that estimate), stopping at the first whose recall
-- is at least target_recall with 95% confidence (recall - 1.645 standard errors). The loader and
-- sql/embeddings.sql both pick the live version's ef_search with it. Exact neighbours come from a
-- sequential scan (ordering by distance + 0 cannot use the index): sample_size full scans, once.
CREATE OR REPLACE FUNCTION recsys_ef_search_recall(
    items regclass, users regclass, target_recall double precision,
    sample_size integer DEFAULT 200, k integer DEFAULT 10,
    candidates integer[] DEFAULT '{10,16,24,32,40,48,64,80,100,128,160,200,250,300,400,500,600,800,1000}')
RETURNS TABLE (ef_search integer, recall double precision, standard_error double precision)
LANGUAGE plpgsql AS $$
DECLARE
    knn text := format(
        'SELECT q.n, hit.id FROM (SELECT row_number() OVER (ORDER BY md5(u.id::text)) AS n, u.embedding AS vec '
        '    FROM %s AS u ORDER BY md5(u.id::text) LIMIT %s) AS q '
        'CROSS JOIN LATERAL (SELECT e.id FROM %s AS e ORDER BY (e.embedding <=> q.vec) %%s LIMIT %s) AS hit',
        users, sample_size, items, k);
BEGIN
    PERFORM set_config('hnsw.iterative_scan', 'off', true);  -- plain top-k scans, as without filters
    DROP TABLE IF EXISTS recsys_exact_knn;
    EXECUTE 'CREATE TEMP TABLE recsys_exact_knn ON COMMIT DROP AS ' || format(knn, '+ 0');
    FOREACH ef_search IN ARRAY candidates LOOP
        PERFORM set_config('hnsw.ef_search', ef_search::text, true);
        EXECUTE 'WITH hits AS (SELECT n, count(*) AS h FROM (' || format(knn, '') || ') AS got '
                '              JOIN recsys_exact_knn USING (n, id) GROUP BY n), '
                '     per_query AS (SELECT coalesce(h, 0)::double precision / c AS r '
                '                   FROM (SELECT n, count(*) AS c FROM recsys_exact_knn GROUP BY n) AS x '
                '                   LEFT JOIN hits USING (n)) '
                'SELECT coalesce(avg(r), 0), coalesce(stddev_samp(r), 0) / sqrt(greatest(count(*), 1)) FROM per_query'
            INTO recall, standard_error;
        RETURN NEXT;
        EXIT WHEN recall - 1.645 * standard_error >= target_recall;
    END LOOP;
    DROP TABLE recsys_exact_knn;
END
$$;
