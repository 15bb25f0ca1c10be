// An error shown to a person: the server's message, which says what to do next, and a
// reference for support.
import { Alert, Text } from '@mantine/core';
import { IconAlertTriangle } from '@tabler/icons-react';
import { ApiError, messageOf } from '../api';

export function ErrorAlert({
  error,
  title = 'That did not work',
}: {
  error: unknown;
  title?: string;
}) {
  if (error === null || error === undefined) return null;
  return (
    <Alert color="red" title={title} icon={<IconAlertTriangle aria-hidden />} role="alert">
      <Text size="sm">{messageOf(error)}</Text>
      {error instanceof ApiError && error.requestId && (
        <Text size="xs" c="dimmed" mt={4}>
          Reference for support: {error.requestId}
        </Text>
      )}
    </Alert>
  );
}
