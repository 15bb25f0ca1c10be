// First run: the one-time link printed by `caretrail serve` opens this page; it creates the
// organization and its first administrator. The token travels in the fragment (#token=…), which
// browsers never send to the server or put in a Referer.
import { useState } from 'react';
import { Anchor, Button, PasswordInput, Stack, Text, TextInput } from '@mantine/core';
import { api } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import { PublicCard } from '../components/PublicCard';

export function SetupPage() {
  const token = new URLSearchParams(window.location.hash.slice(1)).get('token') ?? '';
  const [form, setForm] = useState({ organizationName: '', name: '', email: '', password: '' });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);

  const field = (key: keyof typeof form) => ({
    value: form[key],
    onChange: (event: React.ChangeEvent<HTMLInputElement>) => {
      setForm({ ...form, [key]: event.currentTarget.value });
    },
  });

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const user = await api<{ email: string }>('POST', '/setup', { body: { ...form, token } });
      // The token is spent: take it out of the address bar and history.
      window.history.replaceState(null, '', '/setup');
      setDone(user.email);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <PublicCard title="Set up Caretrail">
      {done ? (
        <Stack>
          <Text role="status">
            Your organization is ready. Sign in as <b>{done}</b> to register patients and invite
            your team.
          </Text>
          <Button component="a" href="/">
            Go to sign-in
          </Button>
        </Stack>
      ) : !token ? (
        <Text>
          This page needs the one-time setup link that <code>caretrail serve</code> printed when it
          first started. Open that link, or restart the server with an empty database to get a new
          one.
        </Text>
      ) : (
        <form onSubmit={(event) => void submit(event)}>
          <Stack>
            <Text size="sm" c="dimmed">
              Create your organization and its first administrator. This link works once.
            </Text>
            <TextInput
              label="Organization"
              required
              maxLength={200}
              {...field('organizationName')}
            />
            <TextInput
              label="Your name"
              required
              maxLength={200}
              autoComplete="name"
              {...field('name')}
            />
            <TextInput
              label="Email"
              type="email"
              required
              autoComplete="email"
              {...field('email')}
            />
            <PasswordInput
              label="Password"
              description="At least 12 characters."
              required
              minLength={12}
              autoComplete="new-password"
              {...field('password')}
            />
            <ErrorAlert error={error} />
            <Button type="submit" loading={busy}>
              Create organization
            </Button>
            <Anchor href="/" size="sm">
              Already set up? Sign in
            </Anchor>
          </Stack>
        </form>
      )}
    </PublicCard>
  );
}
