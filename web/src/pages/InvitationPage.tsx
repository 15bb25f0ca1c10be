// Someone invited to see a patient (owner, trainer, walker, carer, referral vet) sets their name
// and password here from the mailed link (/invitations#token=…), then signs in.
import { useState } from 'react';
import { Button, PasswordInput, Stack, Text, TextInput } from '@mantine/core';
import { api } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import { PublicCard } from '../components/PublicCard';

export function InvitationPage() {
  const token = new URLSearchParams(window.location.hash.slice(1)).get('token') ?? '';
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(false);

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api('POST', `/invitations/${encodeURIComponent(token)}/accept`, {
        body: { name, password },
      });
      window.history.replaceState(null, '', '/invitations');
      setDone(true);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <PublicCard title="Accept your invitation">
      {done ? (
        <Stack>
          <Text role="status">
            Your account is ready. Sign in with your email and new password.
          </Text>
          <Button component="a" href="/">
            Go to sign-in
          </Button>
        </Stack>
      ) : !token ? (
        <Text>
          Open the link from your invitation email. If it has expired, ask the clinic to share the
          record with you again.
        </Text>
      ) : (
        <form onSubmit={(event) => void submit(event)}>
          <Stack>
            <TextInput
              label="Your name"
              required
              autoComplete="name"
              value={name}
              onChange={(event) => {
                setName(event.currentTarget.value);
              }}
            />
            <PasswordInput
              label="Choose a password"
              description="At least 12 characters. If you already have a Caretrail account, enter its password."
              required
              minLength={12}
              autoComplete="new-password"
              value={password}
              onChange={(event) => {
                setPassword(event.currentTarget.value);
              }}
            />
            <ErrorAlert error={error} />
            <Button type="submit" loading={busy}>
              Create my account
            </Button>
          </Stack>
        </form>
      )}
    </PublicCard>
  );
}
