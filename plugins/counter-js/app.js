// `counter-js` — an agenthook plugin in JavaScript (componentize-js): counts the events
// it receives per type in kv (atomically) and logs each one; a body that is not JSON is
// a permanent failure, and a `retry` field asks for a retry.
//
// The host's tools are the WIT imports `agenthook:plugin/{log,kv,config,http,email,events}@0.2.0`;
// a WIT `result` error arrives as a thrown error whose `payload` is the tool-error
// (`{tag: 'denied', val: '…'}`), and `handle` reports failure by throwing a
// handler-error (`{tag: 'retry', val: {reason, delayMs}}` or `{tag: 'permanent', val}`).

import { write } from 'agenthook:plugin/log@0.2.0';
import { get } from 'agenthook:plugin/config@0.2.0';
import { increment } from 'agenthook:plugin/kv@0.2.0';

function fail(tag, val) {
  const error = new Error(tag);
  error.payload = { tag, val };
  return error;
}

export function handle(event) {
  let body;
  try {
    body = JSON.parse(new TextDecoder().decode(event.body));
  } catch (e) {
    throw fail('permanent', `event body is not JSON: ${e.message}`);
  }
  if (body.retry) {
    throw fail('retry', { reason: 'asked to retry', delayMs: undefined });
  }
  const greeting = get('greeting') ?? 'hello';
  let count;
  try {
    count = increment(`count/${event.eventType}`, 1n);
  } catch (e) {
    const err = e.payload ?? { tag: 'failed', val: String(e) };
    throw fail(err.tag === 'denied' || err.tag === 'invalid' ? 'permanent' : 'retry',
      err.tag === 'denied' || err.tag === 'invalid' ? `${err.tag}: ${err.val}` : { reason: `${err.tag}: ${err.val}`, delayMs: undefined });
  }
  write('info', `${greeting}: ${event.eventType} event ${event.eventId} (#${count} of its type)`);
}
