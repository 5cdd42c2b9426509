/**
 * Handshakes per second of the TypeScript handshake in Node, both ends on this
 * thread (the sans-IO states: `Initiator.start` → `Responder.readHello` →
 * `ExpectResponse.read` → `VerifyPeer.finish` → `ExpectFinish.read` →
 * `VerifyPeer.finish`) between known peers (each certificate verified once and
 * cached, ADR 0006), and its crypto floor through the same curve backend
 * (`src/curves.ts`: 2 x25519 key generations, 6 x25519 DH), best of `--rounds` interleaved rounds of `--seconds / rounds`
 * each.
 *
 * Prints one line: handshakes per second, floor per second, Node's version, the
 * curve backend. The Rust
 * handshake bench (`cargo bench -p peers-sdk --bench handshake`) runs this and
 * prints it beside the Rust rows.
 *
 * `node dist/bench/handshake.js [--seconds 3] [--rounds 3]`
 */
import { curvesBackend, x25519PublicKey, x25519Shared } from "../src/curves.js";
import {
  Initiator,
  ReplayGuard,
  Responder,
  TrustLevel,
  defaultHandshakeConfig,
  type TransportSecurity,
} from "../src/handshake.js";
import { DeviceKeys, randomBytes } from "../src/identity.js";

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} takes a positive number`);
  return value;
}

const seconds = arg("--seconds", 3);
const rounds = Math.floor(arg("--rounds", 3));

const alice = DeviceKeys.generate("bench-user");
const bob = DeviceKeys.generate("bench-user");
const aliceConfig = defaultHandshakeConfig(alice);
const bobConfig = defaultHandshakeConfig(bob);
const security: TransportSecurity = { confidential: false };
let guard = new ReplayGuard();
let guarded = 0;

/** One complete handshake, both ends; checks that both derived the same keys. */
function handshake(): void {
  // A guard holds 65,536 first messages; a fresh one before it fills.
  if (++guarded === 60_000) {
    guard = new ReplayGuard();
    guarded = 0;
  }
  const now = Date.now();
  const [expectResponse, hello] = Initiator.start(aliceConfig, security, bob.deviceId, now);
  const [expectFinish, response] = new Responder(bobConfig, security, now).readHello(hello, now, guard);
  const { message, session } = expectResponse.read(response, now).finish(TrustLevel.Trusted, TrustLevel.Known, now);
  if (!message) throw new Error("the initiator has no message 3");
  const bobSession = expectFinish.read(message, now).finish(TrustLevel.Trusted, TrustLevel.Known, now).session;
  if (bobSession.recvKey[0] !== session.sendKey[0]) throw new Error("the two ends derived different keys");
}

const staticA = randomBytes(32);
const staticB = randomBytes(32);
const staticPublicA = x25519PublicKey(staticA);
const staticPublicB = x25519PublicKey(staticB);

/** The public-key operations a Noise XX handshake cannot avoid. */
function floor(): void {
  const eA = randomBytes(32);
  const eB = randomBytes(32);
  const ePublicA = x25519PublicKey(eA);
  const ePublicB = x25519PublicKey(eB);
  x25519Shared(eA, ePublicB); // ee, initiator
  x25519Shared(eB, ePublicA); // ee, responder
  x25519Shared(eA, staticPublicB); // es
  x25519Shared(staticB, ePublicA);
  x25519Shared(staticA, ePublicB); // se
  x25519Shared(eB, staticPublicA);
}

/** Best rate of each op over interleaved rounds (the Rust bench's method). */
function bestRates(ops: Array<() => void>): number[] {
  const slice = (seconds * 1000) / rounds;
  const best = ops.map(() => 0);
  for (const op of ops) op(); // warm-up
  for (let round = 0; round < rounds; round++) {
    ops.forEach((op, i) => {
      const start = performance.now();
      let count = 0;
      while (performance.now() - start < slice) {
        op();
        count++;
      }
      best[i] = Math.max(best[i] ?? 0, (count * 1000) / (performance.now() - start));
    });
  }
  return best;
}

const [handshakes, floorRate] = bestRates([handshake, floor]);
console.log(`${handshakes} ${floorRate} ${process.version} ${curvesBackend}`);
