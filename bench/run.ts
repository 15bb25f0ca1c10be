// `npm run bench`: runs every benchmark and prints ratios against baselines measured in the same
// run (absolute numbers depend on the machine; ratios are what we compare over time).
import { groupCommitBench } from './group-commit.bench.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64);

const r = await groupCommitBench({ seconds, concurrency });
const single = r.singleCommitPerSecond ?? 0;
const grouped = r.groupCommitNotesPerSecond ?? 0;
const ungrouped = r.noGroupCommitNotesPerSecond ?? 0;
const fmt = (n: number) => n.toFixed(0).padStart(8);
process.stdout.write(
  [
    `group commit — durable note creates over HTTP (${concurrency} concurrent clients, ${seconds} s, SQLite synchronous=FULL)`,
    `  single-commit (fsync) rate of this disk      ${fmt(single)} /s   (baseline)`,
    `  note creates, group commit                   ${fmt(grouped)} /s   ratio ${(grouped / single).toFixed(2)}x the single-commit rate`,
    `  note creates, one commit per request         ${fmt(ungrouped)} /s   ratio ${(ungrouped / single).toFixed(2)}x`,
    `  group commit vs one commit per request       ${(grouped / ungrouped).toFixed(2)}x`,
    '',
  ].join('\n'),
);
