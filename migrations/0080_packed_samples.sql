-- pgAnalytics v3 central database: packed raw samples (plain PostgreSQL).
--
-- One row per series per sealed window instead of one row per sample. A row of
-- `samples` costs about 87 bytes (heap and primary key); a packed sample costs its
-- share of one row per series and window plus 8 bytes of value, or nothing but that
-- share when the value holds still. docs/central-database.md ("Raw samples, rows and
-- packed") gives the measured figures.
--
-- * `sample_times`: the timestamps of one window, as milliseconds after `lo`, in
--   ascending order. The series of one collection group share their timestamps, so
--   one row serves every series of an agent's block that has a value at each of them.
-- * `samples_packed`: one series in one window: `lo`/`hi` its first and last sample
--   time, `times_id` the window's timestamps (the `sample_times` row with the same
--   `lo`), `vals` the values in the same order; a single value when all are the same.
--
-- The open head block stays in `samples` as rows; the sink writes a sealed block
-- packed and, in the same transaction, removes the head's rows it replaces. Rows left
-- behind (a database from before this migration, a batch the sink wrote as rows) are
-- packed later in bounded batches (federator/src/db/sink/pack.rs). A sample is stored
-- once, in one of the two forms; readers go through pga_raw and its siblings below,
-- which read both. A window spans less than an hour (blocks are at most an hour long,
-- packing windows are clock hours): the readers rely on that to bound their scans.
--
-- Where TimescaleDB holds the samples in compressed hypertables the sink keeps the row
-- layout and these tables stay empty.

CREATE SEQUENCE sample_times_id_seq;

CREATE TABLE sample_times (
    id       bigint      NOT NULL,
    lo       timestamptz NOT NULL,
    agent_id bigint      NOT NULL,
    offsets  integer[]   NOT NULL,
    PRIMARY KEY (id, lo)
) PARTITION BY RANGE (lo);

CREATE TABLE samples_packed (
    series_id bigint             NOT NULL,
    lo        timestamptz        NOT NULL,
    hi        timestamptz        NOT NULL,
    times_id  bigint             NOT NULL,
    vals      double precision[] NOT NULL,
    PRIMARY KEY (series_id, lo)
) PARTITION BY RANGE (lo);

INSERT INTO pga_partitioned (parent, step) VALUES ('sample_times', 'day'), ('samples_packed', 'day')
ON CONFLICT DO NOTHING;

-- The partitions the other daily tables already have, for the packed tables too
-- (packing reaches back as far as raw samples are kept).
SELECT pga_ensure_partitions(ARRAY(
    SELECT lower_bound FROM pga_partitions WHERE parent = 'samples'));

-- The values of one packed row, one per timestamp, after checking the row: as many
-- values as timestamps (or a single value for all), none NULL, the timestamps
-- strictly ascending from 0 and `hi` the last of them. A row that fails is reported
-- with its series and window, never read as something it does not say; with
-- p_skip_damaged (the sink's own reads, which must not stop an agent's ingest over
-- one damaged row) it gives NULL instead, and the callers below skip the row.
CREATE FUNCTION pga_packed_values(
    p_series_id bigint, p_lo timestamptz, p_hi timestamptz, p_offsets integer[],
    p_vals double precision[], p_skip_damaged boolean DEFAULT false)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n       integer := coalesce(cardinality(p_offsets), 0);
    prev    integer;
    o       integer;
    problem text;
BEGIN
    IF n = 0 OR p_offsets[1] IS DISTINCT FROM 0
       OR p_lo + p_offsets[n] * interval '1 millisecond' IS DISTINCT FROM p_hi THEN
        problem := 'the timestamps do not run from lo to hi';
    ELSE
        FOREACH o IN ARRAY p_offsets LOOP
            IF o IS NULL OR o <= prev THEN
                problem := 'the timestamps are not in ascending order';
                EXIT;
            END IF;
            prev := o;
        END LOOP;
    END IF;
    IF problem IS NULL AND coalesce(cardinality(p_vals), 0) NOT IN (1, n) THEN
        problem := format('%s timestamps but %s values', n, coalesce(cardinality(p_vals), 0));
    ELSIF problem IS NULL AND array_position(p_vals, NULL) IS NOT NULL THEN
        problem := 'a value is NULL';
    END IF;
    IF problem IS NULL THEN
        RETURN CASE WHEN cardinality(p_vals) = n THEN p_vals
                    ELSE array_fill(p_vals[1], ARRAY[n]) END;
    ELSIF p_skip_damaged THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'packed samples of series % in the window starting %: %',
        p_series_id, p_lo, problem
        USING HINT = 'the row was changed outside the federator; delete it or restore it from a backup';
END
$$;

-- The raw samples of the series `p_ids` with p_from <= ts <= p_to, from both forms,
-- in no particular order. Every reader of raw samples goes through this function or
-- the two below.
CREATE FUNCTION pga_raw(p_ids bigint[], p_from timestamptz, p_to timestamptz,
                        p_skip_damaged boolean DEFAULT false)
RETURNS TABLE (series_id bigint, ts timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT s.series_id, s.ts, s.value
    FROM samples s
    WHERE s.series_id = ANY (p_ids) AND s.ts >= p_from AND s.ts <= p_to
    UNION ALL
    SELECT u.series_id, u.ts, u.value
    FROM (
        SELECT p.series_id, p.lo + x.o * interval '1 millisecond' AS ts, x.v AS value
        FROM samples_packed p
        JOIN sample_times t ON t.id = p.times_id AND t.lo = p.lo
        CROSS JOIN LATERAL unnest(t.offsets,
                                  pga_packed_values(p.series_id, p.lo, p.hi, t.offsets, p.vals,
                                                    p_skip_damaged))
                           AS x (o, v)
        WHERE p.series_id = ANY (p_ids)
          AND p.lo <= p_to AND p.lo > p_from - interval '1 hour' AND p.hi >= p_from
          AND t.lo <= p_to AND t.lo > p_from - interval '1 hour'
          AND x.v IS NOT NULL
    ) u
    WHERE u.ts >= p_from AND u.ts <= p_to
$$;

-- The newest raw sample of series p_id before p_before (strictly), from both forms:
-- no sample older than the start of the newest packed window before p_before can be
-- it, so only the windows from there on are read.
CREATE FUNCTION pga_raw_before(p_id bigint, p_before timestamptz,
                               p_skip_damaged boolean DEFAULT false)
RETURNS TABLE (ts timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT c.ts, c.value
    FROM (
        (SELECT s.ts, s.value FROM samples s
         WHERE s.series_id = p_id AND s.ts < p_before
         ORDER BY s.ts DESC LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value
         FROM (SELECT max(p.lo) AS lo FROM samples_packed p
               WHERE p.series_id = p_id AND p.lo < p_before) w
         CROSS JOIN LATERAL pga_raw(ARRAY[p_id], w.lo,
                                    p_before - interval '1 microsecond', p_skip_damaged) r
         WHERE w.lo IS NOT NULL
         ORDER BY r.ts DESC LIMIT 1)
    ) c
    ORDER BY c.ts DESC LIMIT 1
$$;

-- The oldest raw sample of series p_id after p_after (strictly), from both forms:
-- the first packed window ending after p_after bounds it.
CREATE FUNCTION pga_raw_after(p_id bigint, p_after timestamptz,
                              p_skip_damaged boolean DEFAULT false)
RETURNS TABLE (ts timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT c.ts, c.value
    FROM (
        (SELECT s.ts, s.value FROM samples s
         WHERE s.series_id = p_id AND s.ts > p_after
         ORDER BY s.ts LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value
         FROM (SELECT p.hi FROM samples_packed p
               WHERE p.series_id = p_id AND p.hi > p_after
                 AND p.lo > p_after - interval '1 hour'
               ORDER BY p.lo LIMIT 1) w
         CROSS JOIN LATERAL pga_raw(ARRAY[p_id], p_after + interval '1 microsecond', w.hi,
                                    p_skip_damaged) r
         ORDER BY r.ts LIMIT 1)
    ) c
    ORDER BY c.ts LIMIT 1
$$;

SELECT pga_apply_grants();
