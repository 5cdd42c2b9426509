// Pairs by code with long-term keys from a key file (created when missing), for the
// live interop test (tests/tests/peers_js_send.rs), printing JSON lines:
//
//   node dist/examples/pair-by-code.js pair SIGNALING_URL KEY_FILE GROUP...
//   node dist/examples/pair-by-code.js join SIGNALING_URL KEY_FILE CODE
//
// {"event":"keys","share_code","device"} first; {"event":"code","code"} (pair);
// {"event":"paired","device","user","addresses","groups"}; {"event":"failed","kind","code","message"} (exit 1).
import { FileKeyStore, joinByCode, loadOrCreateKeys, pairByCode, PeersError, toHex, toShareCode } from "../src/index.js";

const report = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [mode, url, keyFile, ...rest] = process.argv.slice(2);
if ((mode !== "pair" && mode !== "join") || !url || !keyFile || rest.length === 0) {
  report("failed", { message: "usage: pair-by-code.js pair|join SIGNALING_URL KEY_FILE GROUP...|CODE" });
  process.exit(2);
}

try {
  const keys = await loadOrCreateKeys(new FileKeyStore(keyFile), "js-user");
  report("keys", { share_code: toShareCode(keys.info()), device: toHex(keys.deviceId) });
  let paired;
  if (mode === "pair") {
    const handle = await pairByCode(url, keys, rest);
    report("code", { code: handle.code });
    paired = await handle.done;
  } else {
    paired = await joinByCode(url, rest[0]!, keys);
  }
  report("paired", { device: toHex(paired.device.device_id), user: paired.device.user_id, addresses: paired.device.addresses, groups: paired.groups });
  process.exit(0);
} catch (err) {
  const e = err as PeersError;
  report("failed", { kind: e.kind, code: e.code, message: e.message });
  process.exit(1);
}
