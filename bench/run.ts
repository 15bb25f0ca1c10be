// `npm run bench`: runs every benchmark and prints ratios against baselines measured in the same
// run (absolute numbers depend on the machine; ratios are what we compare over time).
// BENCH_ONLY=group-commit|audit|documents|mllp picks one; BENCH_FILE_MB sizes the document bench; BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_AUDIT_EVENTS, BENCH_MLLP_CONNECTIONS tune them.
import { auditedReadBench, verifyAndExportBench } from './audit.bench.js';
import { documentsBench } from './documents.bench.js';
import { groupCommitBench } from './group-commit.bench.js';
import { mllpBench } from './mllp.bench.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64);
const auditEvents = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const only = process.env.BENCH_ONLY;
const fmt = (n: number) => n.toFixed(0).padStart(8);
const out = (lines: string[]) => process.stdout.write(`${lines.join('\n')}\n\n`);

if (only === undefined || only === 'group-commit') {
  const r = await groupCommitBench({ seconds, concurrency });
  const single = r.singleCommitPerSecond ?? 0;
  const grouped = r.groupCommitNotesPerSecond ?? 0;
  const ungrouped = r.noGroupCommitNotesPerSecond ?? 0;
  out([
    `group commit — durable note creates over HTTP (${concurrency} concurrent clients, ${seconds} s, SQLite synchronous=FULL)`,
    `  single-commit (fsync) rate of this disk      ${fmt(single)} /s   (baseline)`,
    `  note creates, group commit                   ${fmt(grouped)} /s   ratio ${(grouped / single).toFixed(2)}x the single-commit rate`,
    `  note creates, one commit per request         ${fmt(ungrouped)} /s   ratio ${(ungrouped / single).toFixed(2)}x`,
    `  group commit vs one commit per request       ${(grouped / ungrouped).toFixed(2)}x`,
  ]);
}

if (only === undefined || only === 'audit') {
  const reads = await auditedReadBench({ seconds, concurrency });
  out([
    `audited chart reads — GET /api/v1/patients/{id} over HTTP (${concurrency} concurrent clients, ${seconds} s, SQLite)`,
    `  same route, auditing off (baseline)          ${fmt(reads.unaudited)} /s`,
    `  audited (event committed before the answer)  ${fmt(reads.audited)} /s   ratio ${(reads.audited / reads.unaudited).toFixed(2)} (aim >= 0.7)`,
  ]);
  const v = await verifyAndExportBench(auditEvents);
  out([
    `audit verification and export — ${auditEvents.toLocaleString('en')} events (SQLite)`,
    `  verify in-process (tsx): ${v.verifySeconds.toFixed(1)} s, ${fmt(v.eventsPerSecond)} events/s   (aim: 1,000,000 in under 10 s)`,
    `  caretrail audit verify (built CLI, start-up included): ${v.cliVerifySeconds.toFixed(1)} s`,
    `  CSV export: ${v.exported.toLocaleString('en')} rows in ${v.exportSeconds.toFixed(1)} s, RSS growth ${v.exportRssGrowthMb.toFixed(1)} MB   (aim: under 100 MB)`,
  ]);
}

if (only === undefined || only === 'documents') {
  const d = await documentsBench(Number(process.env.BENCH_FILE_MB ?? 100));
  const mb = (n: number) => `${n.toFixed(0).padStart(6)} MB/s`;
  out([
    `documents — one ${d.megabytes} MB file over HTTP: streamed, encrypted (AES-256-GCM), fsync'd (SQLite + folder)`,
    `  raw disk write + fsync (baseline)            ${mb(d.rawWriteMBps)}`,
    `  upload (multipart POST)                      ${mb(d.uploadMBps)}   ratio ${(d.uploadMBps / d.rawWriteMBps).toFixed(2)} (aim >= 0.5)`,
    `  raw disk read (baseline)                     ${mb(d.rawReadMBps)}`,
    `  download (GET content, SHA-256 checked)      ${mb(d.downloadMBps)}   ratio ${(d.downloadMBps / d.rawReadMBps).toFixed(2)} (aim >= 0.5)`,
    `  server peak RSS growth: upload ${d.uploadRssGrowthMb.toFixed(1)} MB, download ${d.downloadRssGrowthMb.toFixed(1)} MB   (aim: under 64 MB)`,
  ]);
}

if (only === undefined || only === 'mllp') {
  const connections = Number(process.env.BENCH_MLLP_CONNECTIONS ?? 8);
  const m = await mllpBench({ seconds, connections });
  out([
    `HL7 v2 ORU^R01 results over MLLP (${connections} connections, one message in flight each, ${seconds} s per transport in alternating slices, SQLite)`,
    `  same results as JSON webhook over HTTP       ${fmt(m.webhookPerSecond)} /s   (baseline, ${connections} keep-alive clients)`,
    `  ORU^R01 over MLLP (Hl7Client, ACK AA)        ${fmt(m.mllpPerSecond)} /s   ratio ${(m.mllpPerSecond / m.webhookPerSecond).toFixed(2)}x the webhook`,
    `  MLLP answers: ${m.mllpAa.toLocaleString('en')} AA of ${m.mllpSent.toLocaleString('en')} sent, non-AA ${m.mllpNonAa}; results stored: MLLP ${m.mllpStored.toLocaleString('en')}, webhook ${m.webhookStored.toLocaleString('en')} of ${m.webhookSent.toLocaleString('en')}`,
  ]);
}
