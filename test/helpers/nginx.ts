// nginx as a load balancer in tests and benchmarks: a foreground process with a configuration of
// its own in a temporary folder, round-robin over the given instances' ports.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function nginxBinary(): string | null {
  for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx'])
    if (fs.existsSync(candidate)) return candidate;
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** nginx in the foreground with a configuration of its own in `dir`, proxying to `ports`. */
export async function startNginx(
  dir: string,
  ports: number[],
): Promise<{ baseUrl: string; child: ChildProcess; stop(): Promise<void> }> {
  const bin = nginxBinary();
  if (bin === null) throw new Error('nginx is required (apt-get install nginx-light)');
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  // Started as root, nginx's workers run as another user: its temporary folders must be theirs too.
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true, mode: 0o777 });
  fs.chmodSync(path.join(dir, 'tmp'), 0o777);
  fs.writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  log_format upstream '$upstream_addr $status';
  access_log ${dir}/access.log upstream;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  upstream caretrail {
${ports.map((p) => `    server 127.0.0.1:${String(p)} max_fails=1 fail_timeout=5s;`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${String(port)};
    client_max_body_size 50m;
    location / {
      proxy_pass http://caretrail;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      # Uploads stream through to the instance instead of into a temporary file first.
      proxy_request_buffering off;
      # Only requests that never reached an instance move on (nginx never resends a POST).
      proxy_next_upstream error timeout;
    }
  }
}
`,
  );
  execFileSync(bin, ['-t', '-q', '-p', dir, '-c', conf]);
  const child = spawn(bin, ['-p', dir, '-c', conf], { stdio: 'ignore' });
  const baseUrl = `http://127.0.0.1:${String(port)}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await fetch(`${baseUrl}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error('nginx did not come up');
    await sleep(100);
  }
  return {
    baseUrl,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGQUIT');
      await exited;
    },
  };
}
