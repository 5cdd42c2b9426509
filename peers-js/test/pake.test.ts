// The transfer PAKE (src/pake.ts) against the Rust side's vectors
// (tests/tests/peers_js_vectors.rs): from the same randomness, peers-js sends the same
// SPAKE2 messages and Confirm frames, byte for byte, in both roles, accepts the Rust
// side's Confirm when the codes match and refuses it (WrongCode) when they do not;
// then the refusals a hostile peer meets.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  decodePakeFrame,
  DeviceKeys,
  encodePakeFrame,
  fromHex,
  PakeConfirm,
  PakeRole,
  PeersError,
  startPake,
  toHex,
} from "../src/index.js";

interface PakeCase {
  creator_password: string;
  joiner_password: string;
  creator_key_file: string;
  joiner_key_file: string;
  creator_random: string;
  joiner_random: string;
  creator_pake: string;
  joiner_pake: string;
  creator_confirm: string;
  joiner_confirm: string;
  creator_outcome: { ok?: string; err?: string };
  joiner_outcome: { ok?: string; err?: string };
}

const vectors = JSON.parse(readFileSync(new URL("../../test/vectors.json", import.meta.url), "utf8")) as { pake: PakeCase[] };

function replay(hexBytes: string): (n: number) => Uint8Array {
  const bytes = fromHex(hexBytes);
  let at = 0;
  return (n) => {
    assert.ok(at + n <= bytes.length, "peers-js draws more randomness than Rust did");
    const out = bytes.slice(at, at + n);
    at += n;
    return out;
  };
}

const refused = (code: string) => (err: unknown) => err instanceof PeersError && err.kind === "Transfer" && err.code === code;

function confirmOf(hexFrame: string): PakeConfirm {
  const frame = decodePakeFrame(fromHex(hexFrame));
  assert.ok("confirm" in frame, "a Confirm frame");
  return frame.confirm;
}

function pakeOf(hexFrame: string): Uint8Array {
  const frame = decodePakeFrame(fromHex(hexFrame));
  assert.ok("pake" in frame, "a Pake frame");
  return frame.pake;
}

test("PAKE vectors: the same messages and Confirms as Rust in both roles, and the same verdicts", () => {
  assert.ok(vectors.pake.length >= 3);
  assert.ok(vectors.pake.some((c) => c.creator_outcome.err === "WrongCode"), "a wrong-code case is among the vectors");
  for (const c of vectors.pake) {
    const sides: [PakeRole, string, string, string, string, string, PakeCase["creator_outcome"], string, string][] = [
      ["creator", c.creator_password, c.creator_key_file, c.creator_random, c.creator_pake, c.creator_confirm, c.creator_outcome, c.joiner_pake, c.joiner_confirm],
      ["joiner", c.joiner_password, c.joiner_key_file, c.joiner_random, c.joiner_pake, c.joiner_confirm, c.joiner_outcome, c.creator_pake, c.creator_confirm],
    ];
    for (const [role, password, keyFile, random, pake, confirm, outcome, peerPake, peerConfirm] of sides) {
      const device = DeviceKeys.fromKeyFile(keyFile).info();
      const [state, message] = startPake(password, role, replay(random));
      assert.equal(toHex(encodePakeFrame({ pake: message })), pake, `${role}: the same SPAKE2 message`);
      const [waiting, own] = state.receive(pakeOf(peerPake), device);
      assert.equal(toHex(encodePakeFrame({ confirm: own })), confirm, `${role}: the same Confirm (so the same key)`);
      if (outcome.ok) {
        assert.equal(toHex(waiting.receive(confirmOf(peerConfirm)).device_id), outcome.ok, `${role}: the peer confirmed`);
      } else {
        assert.throws(() => waiting.receive(confirmOf(peerConfirm)), refused("WrongCode"), `${role}: a wrong code is refused`);
      }
    }
  }
});

test("PAKE between two peers-js devices: the same code confirms, a substituted device or a reflected Confirm does not", () => {
  const alice = DeviceKeys.generate("peers-transfer").info();
  const bob = DeviceKeys.generate("peers-transfer").info();
  const mallory = DeviceKeys.generate("peers-transfer").info();
  const [a, aMsg] = startPake("7-maple-orbit", "creator");
  const [b, bMsg] = startPake("7-maple-orbit", "joiner");
  const [aWait, aConfirm] = a.receive(bMsg, alice);
  const [bWait, bConfirm] = b.receive(aMsg, bob);
  assert.deepEqual(aWait.receive(bConfirm).device_id, bob.device_id);
  assert.deepEqual(bWait.receive(aConfirm).device_id, alice.device_id);
  assert.throws(() => aWait.receive({ ...bConfirm, device: mallory }), refused("WrongCode"), "the server swapped the device");
  assert.throws(() => aWait.receive(aConfirm), refused("WrongCode"), "the creator's own Confirm reflected");
  const [c, cMsg] = startPake("7-maple-otter", "joiner");
  const [cWait, cConfirm] = c.receive(aMsg, bob);
  const [aWait2, aConfirm2] = startPake("7-maple-orbit", "creator")[0].receive(cMsg, alice);
  assert.throws(() => aWait2.receive(cConfirm), refused("WrongCode"));
  assert.throws(() => cWait.receive(aConfirm2), refused("WrongCode"));
});

test("PAKE refusals: malformed messages and frames are protocol errors", () => {
  const device = DeviceKeys.generate("peers-transfer").info();
  const start = () => startPake("7-maple-orbit", "creator")[0];
  for (const bytes of [new Uint8Array(0), new Uint8Array(32), new Uint8Array(34), new Uint8Array(33).fill(0xff)]) {
    assert.throws(() => start().receive(bytes, device), refused("Protocol"), `${bytes.length} bytes`);
  }
  // An 'S' message whose point does not decompress (some y have no x on the curve).
  const offCurve = [...Array(16).keys()].filter((y) => {
    const m = new Uint8Array(33);
    m[0] = 0x53;
    m[1] = y;
    try {
      start().receive(m, device);
      return false;
    } catch (err) {
      assert.ok(refused("Protocol")(err), String(err));
      return true;
    }
  });
  assert.ok(offCurve.length > 0, "some small y is off the curve");
  const pake = encodePakeFrame({ pake: Uint8Array.of(0x53, ...new Uint8Array(32).fill(7)) });
  for (const bytes of [
    new Uint8Array(4097),
    Uint8Array.of(0xc1),
    Uint8Array.of(0x90),
    pake.slice(0, -1),
    Uint8Array.of(0x81, 0xa3, 0x46, 0x6f, 0x6f, 0xc0),
    Uint8Array.of(0x81, 0xa4, 0x50, 0x61, 0x6b, 0x65, 0xc4, 0x01, 0x00),
  ]) {
    assert.throws(() => decodePakeFrame(bytes), refused("Protocol"), toHex(bytes.slice(0, 16)));
  }
  assert.ok("pake" in decodePakeFrame(pake));
});
