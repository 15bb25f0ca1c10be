// A subscription cannot point the server at its own network unless the operator allows it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeEachEngine } from '../helpers/engines.js';
import { startHarness, type Harness } from '../helpers/harness.js';

describeEachEngine('webhook receivers on local addresses', ({ url }) => {
  let h: Harness;
  before(async () => {
    h = await startHarness(url());
  });
  after(async () => {
    await h.close();
  });

  test('loopback, private and localhost receivers are refused; public ones are accepted', async () => {
    const admin = await h.newOrganization();
    for (const webhookUrl of [
      'http://127.0.0.1:8080/hook',
      'http://localhost/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://[::1]:9000/hook',
      'http://10.0.0.5/hook',
    ]) {
      const res = await h.request({
        method: 'POST',
        url: '/api/v1/subscriptions',
        token: admin.token,
        body: { events: ['document.created'], webhookUrl },
      });
      assert.equal(res.statusCode, 400, webhookUrl);
      assert.match(res.json<{ error: { message: string } }>().error.message, /local or private/);
    }
    const list = await h.request({
      method: 'GET',
      url: '/api/v1/subscriptions',
      token: admin.token,
    });
    assert.deepEqual(list.json<{ items: unknown[] }>().items, []);
    const ok = await h.request({
      method: 'POST',
      url: '/api/v1/subscriptions',
      token: admin.token,
      body: { events: ['document.created'], webhookUrl: 'https://hooks.example.org/caretrail' },
    });
    assert.equal(ok.statusCode, 201, ok.body);
    assert.match(ok.json<{ secret: string }>().secret, /^whsec_/);
  });
});
