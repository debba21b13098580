/** Every command and event STACK puts on the bus: the source of the AsyncAPI document. */
import { AUDIT_COMMANDS } from '../audit/audit.commands';
import { AUDIT_EVENTS } from '../audit/audit.events';
import { SERVICE_NAMES } from '../services';
import type { CommandDef, EventDef } from './definitions';
import { ALL_EVENTS } from './events';
import { SYSTEM_COMMANDS } from './system';
import { PASSPORT_COMMAND_LIST } from '../passport/passport-commands';
import { CredentialProxyCommands } from '../credential-proxy/credential-proxy.contracts';
import { AUTH_COMMANDS, AUTH_EVENTS } from '../auth/auth-messages';
import { DROPOFF_COMMAND_LIST, DROPOFF_EVENTS } from '../dropoff/dropoff.contracts';

export const ALL_COMMANDS: readonly CommandDef[] = SERVICE_NAMES.flatMap((s): CommandDef[] => [SYSTEM_COMMANDS[s].ping, SYSTEM_COMMANDS[s].pingPeers]).concat(
  Object.values(CredentialProxyCommands),
  AUTH_COMMANDS,
  AUDIT_COMMANDS,
  PASSPORT_COMMAND_LIST,
  DROPOFF_COMMAND_LIST,
);

export const ALL_EVENT_DEFS: readonly EventDef[] = [...ALL_EVENTS, ...AUTH_EVENTS, ...AUDIT_EVENTS, ...DROPOFF_EVENTS];
