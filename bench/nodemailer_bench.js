// Anchor: nodemailer's pooled SMTP transport sending N ~5 KB messages.
// usage: node nodemailer_bench.js PORT COUNT TRANSPORTS [CONNECTIONS]
// One pooled transport per "alias", CONNECTIONS (default 1) each; prints JSON timings.
"use strict";
const nodemailer = require("nodemailer");

const [port, count, transports, connections = 1] = process.argv.slice(2).map(Number);
// The body bench/run.py sends: varied text with "{{ first }}" in place of the name.
const TEMPLATE = process.env.BENCH_BODY_TEMPLATE;
if (!TEMPLATE) throw new Error("BENCH_BODY_TEMPLATE is not set (bench/run.py sets it)");
const body = (first) => TEMPLATE.replace("{{ first }}", first);

async function main() {
  const pools = Array.from({ length: transports }, () =>
    nodemailer.createTransport({
      pool: true, maxConnections: connections, maxMessages: Infinity,
      host: "127.0.0.1", port, secure: false, ignoreTLS: true,
      connectionTimeout: 30000, socketTimeout: 60000,
    }));
  const done = [];
  const t0 = process.hrtime.bigint();
  const jobs = [];
  for (let i = 0; i < count; i++) {
    const k = i % transports;
    jobs.push(pools[k].sendMail({
      from: `"Alias ${k}" <alias${k}@example.com>`, to: `user${i}@example.com`,
      subject: `Hello First${i}`, text: body(`First${i}`),
    }).then(() => { done.push(process.hrtime.bigint()); }));
  }
  const results = await Promise.allSettled(jobs);
  const failed = results.filter((r) => r.status === "rejected").length;
  pools.forEach((p) => p.close());
  const ns = (t) => Number(t - t0) / 1e9;
  done.sort((a, b) => (a < b ? -1 : 1));
  process.stdout.write(JSON.stringify({
    sent: done.length, failed, elapsed: done.length ? ns(done[done.length - 1]) : null,
    first: done.length ? ns(done[0]) : null,
  }) + "\n");
}
main().catch((e) => { console.error(e); process.exit(1); });
