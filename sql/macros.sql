-- Scalar macros shared by the feature queries. TEMP: they live on the connection that loads them.

-- DreamerV3's symlog: sign(x) * ln(1 + |x|). Identity-like near 0, logarithmic in the tails, so fat-tailed
-- market quantities reach the model on a scale where one bad bar cannot dominate a batch.
CREATE OR REPLACE TEMP MACRO symlog(x) AS sign(x) * ln(1 + abs(x));

-- Relative quantities (log returns, ranges, volatilities) in basis points, so symlog's compression acts
-- on their tails rather than being the identity on values far below 1.
CREATE OR REPLACE TEMP MACRO bps(x) AS 1e4 * x;
