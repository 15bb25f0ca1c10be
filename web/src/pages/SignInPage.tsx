// Sign-in: email and password, then the six-digit code when two-step sign-in is on.
import { useState } from 'react';
import { Alert, Button, PasswordInput, Stack, Text, TextInput } from '@mantine/core';
import { ApiError } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import { PublicCard } from '../components/PublicCard';
import { useSession } from '../session';

export function SignInPage() {
  const { signIn, endedBecause } = useSession();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [needsCode, setNeedsCode] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn({ email, password, ...(needsCode ? { totp } : {}) });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'mfa_required' && !needsCode) setNeedsCode(true);
      else setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <PublicCard title="Sign in to Caretrail">
      <form onSubmit={(event) => void submit(event)}>
        <Stack>
          {endedBecause && (
            <Alert color="blue" role="status">
              {endedBecause}
            </Alert>
          )}
          <TextInput
            label="Email"
            type="email"
            required
            autoComplete="username"
            value={email}
            onChange={(event) => {
              setEmail(event.currentTarget.value);
            }}
          />
          <PasswordInput
            label="Password"
            required
            autoComplete="current-password"
            value={password}
            onChange={(event) => {
              setPassword(event.currentTarget.value);
            }}
          />
          {needsCode && (
            <>
              <Text size="sm">
                Two-step sign-in is on for this account. Enter the 6-digit code from your
                authenticator app.
              </Text>
              <TextInput
                label="Code from your authenticator app"
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9]{6}"
                maxLength={6}
                required
                autoFocus
                value={totp}
                onChange={(event) => {
                  setTotp(event.currentTarget.value.replace(/\D/g, ''));
                }}
              />
            </>
          )}
          <ErrorAlert error={error} title="Could not sign in" />
          <Button type="submit" loading={busy}>
            Sign in
          </Button>
          <Text size="xs" c="dimmed">
            Forgot your password? Ask your clinic’s administrator to set a new one.
          </Text>
        </Stack>
      </form>
    </PublicCard>
  );
}
