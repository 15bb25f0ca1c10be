// Builds the web app into dist/web, which `caretrail serve` serves at /.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    // One chunk per screen group would save little on a clinic network; keep warnings useful.
    chunkSizeWarningLimit: 2000,
  },
  server: {
    // `npx vite web` during development: API calls go to a server started with `npm start`.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
