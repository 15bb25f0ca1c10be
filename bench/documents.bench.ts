// Upload and download of one large file through the server (streamed, encrypted, fsync'd) as a
// ratio of what the raw disk does in the same run, and the server's peak memory growth.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { BENCH_PASSWORD, type Dataset } from './dataset.js';
import { post, startCaretrail } from './server.js';

/** One upload and download of the file, with the raw-disk baselines taken just before. */
export interface DocumentsRound {
  rawWriteMBps: number;
  rawReadMBps: number;
  uploadMBps: number;
  downloadMBps: number;
  uploadRatio: number;
  downloadRatio: number;
  /** Server CPU seconds (all threads) spent on the upload and on the download. */
  uploadCpuSeconds: number;
  downloadCpuSeconds: number;
  uploadRssGrowthMb: number;
  downloadRssGrowthMb: number;
}

/** The median of each figure over BENCH_FILE_ROUNDS rounds (each ratio within its own round). */
export interface DocumentsBenchResult extends DocumentsRound {
  megabytes: number;
  rounds: DocumentsRound[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? 0)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** CPU seconds the process used so far, every thread included (Linux /proc, 100 ticks/s). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const MB = 1024 * 1024;

/** Writes `file` in 1 MiB blocks and fsyncs it: what the disk does without Caretrail. */
function rawWrite(file: string, megabytes: number): number {
  const block = randomBytes(MB);
  const started = process.hrtime.bigint();
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < megabytes; i++) fs.writeSync(fd, block);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return megabytes / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function rawRead(file: string, megabytes: number): Promise<number> {
  const started = process.hrtime.bigint();
  await pipeline(
    fs.createReadStream(file, { highWaterMark: MB }),
    new Writable({
      write(_chunk, _enc, done) {
        done();
      },
    }),
  );
  return megabytes / (Number(process.hrtime.bigint() - started) / 1e9);
}

function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(text);
  return Number(match?.[1] ?? 0) / 1024;
}

/** Resets the peak RSS of `pid` to its current RSS (Linux: clear_refs 5). */
function resetPeak(pid: number): number {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
  return procStatus(pid, 'VmRSS');
}

/** Runs curl; the body goes to `output` (or is returned), with status and total seconds. */
function curl(
  args: string[],
  output?: string,
): Promise<{ status: number; seconds: number; body: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', [
      '-sS',
      '-o',
      output ?? '-',
      '-w',
      '\n%{http_code} %{time_total}',
      ...args,
    ]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`curl exited with ${code}`));
        return;
      }
      const lines = out.split('\n');
      const [status = '0', seconds = '0'] = (lines.pop() ?? '').split(' ');
      resolve({ status: Number(status), seconds: Number(seconds), body: lines.join('\n') });
    });
  });
}

export async function documentsBench(
  ds: Dataset,
  megabytes = 100,
  rounds = 1,
): Promise<DocumentsBenchResult> {
  const dir = fs.mkdtempSync(path.join(path.dirname(ds.dataDir), 'docs-'));
  const source = path.join(dir, 'xray.bin');
  try {
    const server = await startCaretrail(ds.env);
    const pid = server.pid;
    try {
      // Not measured: the start-up verification of the whole audit chain, in the background.
      await server.waitForLog(/audit trail verified/);
      const login = { email: 'vet@bench.test', password: BENCH_PASSWORD };
      const { token } = await post<{ token: string }>(server.baseUrl, '/api/v1/auth/login', login);
      const patientId = ds.sample.patientIds[0] ?? '';
      const done: DocumentsRound[] = [];
      for (let round = 0; round < rounds; round++) {
        // Baselines on the same disk, in the same round (the disk's rate moves between rounds).
        const rawWriteMBps = rawWrite(source, megabytes);
        const rawReadMBps = await rawRead(source, megabytes);
        // curl as the client: the server is measured, not a JavaScript HTTP client on the same
        // two cores (undici's fetch tops out near 125 MB/s here, curl near 500 MB/s).
        const before = resetPeak(pid);
        const cpuBeforeUpload = cpuSeconds(pid);
        const upload = await curl([
          '-H',
          `authorization: Bearer ${token}`,
          '-F',
          `file=@${source};type=application/octet-stream`,
          `${server.baseUrl}/api/v1/patients/${patientId}/documents`,
        ]);
        if (upload.status !== 201)
          throw new Error(`upload failed: ${upload.status} ${upload.body}`);
        const uploadCpuSeconds = cpuSeconds(pid) - cpuBeforeUpload;
        const uploadMBps = megabytes / upload.seconds;
        const uploadRssGrowthMb = procStatus(pid, 'VmHWM') - before;
        const { id } = JSON.parse(upload.body) as { id: string };

        const beforeDownload = resetPeak(pid);
        const cpuBeforeDownload = cpuSeconds(pid);
        const target = path.join(dir, 'downloaded.bin');
        const download = await curl(
          [
            '-H',
            `authorization: Bearer ${token}`,
            `${server.baseUrl}/api/v1/documents/${id}/content`,
          ],
          target,
        );
        if (download.status !== 200) throw new Error(`download failed: ${download.status}`);
        if (fs.statSync(target).size !== megabytes * MB) throw new Error('download is incomplete');
        const downloadCpuSeconds = cpuSeconds(pid) - cpuBeforeDownload;
        const downloadMBps = megabytes / download.seconds;
        const downloadRssGrowthMb = procStatus(pid, 'VmHWM') - beforeDownload;
        fs.rmSync(target);
        done.push({
          rawWriteMBps,
          rawReadMBps,
          uploadMBps,
          downloadMBps,
          uploadRatio: uploadMBps / rawWriteMBps,
          downloadRatio: downloadMBps / rawReadMBps,
          uploadCpuSeconds,
          downloadCpuSeconds,
          uploadRssGrowthMb,
          downloadRssGrowthMb,
        });
      }
      const med = (key: keyof DocumentsRound) => median(done.map((r) => r[key]));
      return {
        megabytes,
        rounds: done,
        rawWriteMBps: med('rawWriteMBps'),
        rawReadMBps: med('rawReadMBps'),
        uploadMBps: med('uploadMBps'),
        downloadMBps: med('downloadMBps'),
        uploadRatio: med('uploadRatio'),
        downloadRatio: med('downloadRatio'),
        uploadCpuSeconds: med('uploadCpuSeconds'),
        downloadCpuSeconds: med('downloadCpuSeconds'),
        uploadRssGrowthMb: med('uploadRssGrowthMb'),
        downloadRssGrowthMb: med('downloadRssGrowthMb'),
      };
    } finally {
      await server.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
