// Who is signed in, and the inactivity warning: the server ends a session unused for
// `idleTimeoutMinutes`; two minutes before that the page offers to stay signed in.
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import type { ReactNode } from 'react';
import { Button, Group, Modal, Text } from '@mantine/core';
import { useQueryClient } from '@tanstack/react-query';
import { useNavigate } from 'react-router';
import { api, ApiError, messageOf, onActivity, onSignedOut } from './api';
import type { CurrentSession, User } from './types';

const WARN_BEFORE_MS = 2 * 60_000;

interface SessionState {
  user: User | null;
  /** True until the first answer tells whether a session exists. */
  loading: boolean;
  /** Why the last session ended, shown on the sign-in page. */
  endedBecause: string | null;
  signIn: (input: { email: string; password: string; totp?: string }) => Promise<void>;
  signOut: () => Promise<void>;
  refresh: () => Promise<void>;
}

const SessionContext = createContext<SessionState | null>(null);

export function useSession(): SessionState {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside SessionProvider');
  return value;
}

/** The signed-in user; only used below the sign-in gate. */
export function useUser(): User {
  const { user } = useSession();
  if (!user) throw new Error('useUser without a signed-in user');
  return user;
}

/** Staff work in an organization; owners, trainers, walkers and carers do not. */
export const isStaff = (user: User) => user.organizationId !== null && user.role !== null;

export function SessionProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [session, setSession] = useState<CurrentSession | null>(null);
  const [loading, setLoading] = useState(true);
  const [endedBecause, setEndedBecause] = useState<string | null>(null);
  const [lastActivity, setLastActivity] = useState(() => Date.now());
  const [now, setNow] = useState(() => Date.now());

  const ended = useCallback(
    (reason: string | null) => {
      setSession(null);
      setEndedBecause(reason);
      queryClient.clear();
    },
    [queryClient],
  );

  const refresh = useCallback(async () => {
    try {
      setSession(await api<CurrentSession>('GET', '/auth/session'));
      setLastActivity(Date.now());
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setSession(null);
      else setEndedBecause(messageOf(err));
    }
  }, []);

  // Is someone signed in already (the cookie of an earlier visit)?
  useEffect(() => {
    let live = true;
    api<CurrentSession>('GET', '/auth/session')
      .then(
        (current) => {
          if (!live) return;
          setSession(current);
          setLastActivity(Date.now());
        },
        (err: unknown) => {
          if (live && !(err instanceof ApiError && err.status === 401))
            setEndedBecause(messageOf(err));
        },
      )
      .finally(() => {
        if (live) setLoading(false);
      });
    return () => {
      live = false;
    };
  }, []);

  useEffect(() => {
    const offActivity = onActivity(() => {
      setLastActivity(Date.now());
    });
    const offSignedOut = onSignedOut(() => {
      ended('Your session ended. Sign in again to continue.');
    });
    return () => {
      offActivity();
      offSignedOut();
    };
  }, [ended]);

  const idleEndsAt = session ? lastActivity + session.idleTimeoutMinutes * 60_000 : Infinity;
  const endsAt = session ? Math.min(idleEndsAt, Date.parse(session.expiresAt)) : Infinity;
  const remainingMs = endsAt - now;

  // The page's clock ticks each second only while the warning counts down; before that one
  // timer wakes it when the warning is due (activity moves `endsAt` and so the timer).
  useEffect(() => {
    if (!session) return;
    const untilWarning = endsAt - WARN_BEFORE_MS - Date.now();
    const timer = setTimeout(
      () => {
        setNow(Date.now());
      },
      untilWarning > 0 ? untilWarning : 1000,
    );
    return () => {
      clearTimeout(timer);
    };
  }, [session, endsAt, now]);

  // Leave no chart on an unattended screen: the page signs out when the session ends.
  useEffect(() => {
    if (!session) return;
    const timer = setTimeout(
      () => {
        ended('You were signed out after a period without activity. Sign in again to continue.');
      },
      Math.max(0, endsAt - Date.now()),
    );
    return () => {
      clearTimeout(timer);
    };
  }, [session, endsAt, ended]);

  const value = useMemo<SessionState>(
    () => ({
      user: session?.user ?? null,
      loading,
      endedBecause,
      async signIn(input) {
        const next = await api<CurrentSession>('POST', '/auth/session', { body: input });
        queryClient.clear();
        setEndedBecause(null);
        setLastActivity(Date.now());
        setSession(next);
      },
      async signOut() {
        try {
          await api('POST', '/auth/logout');
        } finally {
          ended('You signed out.');
          // The next person to sign in here starts at the beginning, not on this one's page.
          void navigate('/', { replace: true });
        }
      },
      refresh,
    }),
    [session, loading, endedBecause, queryClient, ended, refresh, navigate],
  );

  const warn = session !== null && remainingMs > 0 && remainingMs <= WARN_BEFORE_MS;
  const fixedEnd = session !== null && Date.parse(session.expiresAt) <= idleEndsAt;
  return (
    <SessionContext.Provider value={value}>
      {children}
      <Modal
        opened={warn}
        onClose={() => void refresh()}
        title="Your session is about to end"
        centered
      >
        <Text mb="md">
          {fixedEnd
            ? `Your sign-in ends in ${Math.ceil(remainingMs / 1000)} seconds. Save your work, then sign in again.`
            : `For the patients' privacy you will be signed out in ${Math.ceil(remainingMs / 1000)} seconds without activity.`}
        </Text>
        <Group justify="flex-end">
          <Button variant="default" onClick={() => void value.signOut()}>
            Sign out now
          </Button>
          {!fixedEnd && <Button onClick={() => void refresh()}>Stay signed in</Button>}
        </Group>
      </Modal>
    </SessionContext.Provider>
  );
}
