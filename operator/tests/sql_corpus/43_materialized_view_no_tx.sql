-- schemaop:no-transaction
-- A materialized view and its concurrent refresh need separate statements.
CREATE TABLE sales (amount int);
CREATE MATERIALIZED VIEW totals AS SELECT sum(amount) AS total, 1 AS k FROM sales;
CREATE UNIQUE INDEX totals_k ON totals (k);
REFRESH MATERIALIZED VIEW CONCURRENTLY totals;
