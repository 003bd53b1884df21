// Fake outputs of the bench's load tools for the case tests: wrk's text and the fixed-rate client's percentiles.

/** Latency percentiles (µs) around a median, in the fixed-rate client's JSON shape. */
export const percentiles = (p50: number) => ({ count: 1000, min: p50 / 2, mean: p50, p50, p90: p50 * 2, p99: p50 * 3, p999: p50 * 4, max: p50 * 5 });

/** wrk's report of `rps` requests per second over `seconds`. */
export const wrkOutput = (rps: number, seconds = 10) => `Running ${seconds}s test @ http://x:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  301.55us  15.02ms   91.20%
    Req/Sec    39.41k     1.02k   41.23k    76.00%
  Latency Distribution
     50%  760.00us
     75%    0.91ms
     90%    1.10ms
     99%    2.00ms
  ${rps * seconds} requests in ${seconds}.00s, 58.71MB read
Requests/sec:  ${rps.toFixed(2)}
Transfer/sec:      5.87MB
`;
