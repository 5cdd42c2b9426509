/**
 * Transfer codes (docs/protocol.md §9.1): `7-maple-orbit`, a signaling session number
 * (public: it only finds the session) and 2 to 4 words from {@link WORDS} (the PAKE
 * password's secret part, 8 bits each). The whole code's canonical text is the
 * PAKE password. Read forgivingly as the Rust `TransferCode` reads it: any case, `-`
 * or spaces between the parts, a unique prefix of at least 4 letters for a word.
 */
import { PeersError } from "./errors.js";

/** Words in a code unless the caller says (16 bits: one guess per code). */
export const DEFAULT_WORDS = 2;
export const MIN_WORDS = 2;
export const MAX_WORDS = 4;
/** Largest session number a code carries. */
export const MAX_SESSION_NUMBER = 999_999;
/** Longest code text read, in bytes. */
export const MAX_CODE_LEN = 64;

/** The built-in list (the Rust `WORDS`): 256 words, sorted, each with a distinct 4-letter prefix. */
export const WORDS: readonly string[] = [
  "acorn", "actor", "agent", "album", "alpine", "amber", "anchor", "angle", "apple", "apron", "arch", "arena",
  "arrow", "aspen", "atlas", "attic", "autumn", "badge", "bagel", "bakery", "bamboo", "banjo", "barley", "basket",
  "beacon", "beaver", "berry", "bicycle", "blanket", "blossom", "bonfire", "border", "bottle", "bracket", "breeze",
  "bridge", "brook", "bucket", "buffalo", "bunny", "butter", "cabin", "cactus", "camel", "candle", "canoe", "canyon",
  "captain", "carbon", "carpet", "castle", "cedar", "cellar", "cherry", "chimney", "circus", "citrus", "clover",
  "cobalt", "coconut", "comet", "compass", "copper", "coral", "cotton", "cradle", "crayon", "cricket", "crystal",
  "cupcake", "curtain", "daisy", "dancer", "delta", "desert", "diamond", "dinner", "dolphin", "donkey", "dragon",
  "eagle", "easel", "echo", "eclipse", "elbow", "ember", "emerald", "engine", "falcon", "feather", "ferry", "fiddle",
  "flute", "forest", "fossil", "fountain", "fox", "galaxy", "garden", "garlic", "gazelle", "geyser", "ginger",
  "glacier", "granite", "gravel", "guitar", "hammer", "harbor", "harvest", "hazel", "helmet", "heron", "hollow",
  "honey", "horizon", "husky", "iceberg", "igloo", "indigo", "island", "ivory", "jacket", "jaguar", "jasmine",
  "jelly", "jigsaw", "jungle", "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon", "lantern", "laptop", "lemon",
  "leopard", "lilac", "linen", "lizard", "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble",
  "meadow", "melon", "meteor", "mitten", "mosaic", "muffin", "museum", "napkin", "nectar", "needle", "nickel",
  "noodle", "oasis", "ocean", "olive", "onion", "orbit", "orchid", "otter", "oyster", "paddle", "palace", "panda",
  "papaya", "parrot", "peanut", "pebble", "pelican", "pepper", "piano", "pickle", "pigeon", "pillow", "pilot",
  "pine", "pirate", "planet", "plaza", "pocket", "polar", "poppy", "potato", "prairie", "pretzel", "puffin",
  "pumpkin", "puzzle", "quartz", "quill", "rabbit", "radar", "raisin", "raven", "ribbon", "river", "rocket",
  "saddle", "salmon", "sandal", "satin", "scarf", "seagull", "shadow", "silver", "sketch", "sparrow", "spider",
  "spruce", "squirrel", "stadium", "summit", "sunset", "swan", "tablet", "tango", "teapot", "temple", "thunder",
  "tiger", "timber", "toffee", "tomato", "topaz", "tractor", "trumpet", "tulip", "tundra", "turtle", "umbrella",
  "unicorn", "valley", "velvet", "violin", "volcano", "waffle", "walnut", "walrus", "wander", "whistle", "willow",
  "window", "winter", "wizard", "wombat", "yogurt", "zebra", "zenith", "zipper",
];

function badCode(message: string): PeersError {
  return new PeersError("Transfer", "BadCode", message);
}

function checkSession(session: number): void {
  if (!Number.isInteger(session) || session < 1 || session > MAX_SESSION_NUMBER) throw badCode(`session number must be 1 to ${MAX_SESSION_NUMBER}`);
}

/** A word of the list: the whole word, or a prefix of at least 4 letters only one word has. */
export function expandWord(word: string): string | undefined {
  if (WORDS.includes(word)) return word;
  if (word.length < 4) return undefined;
  const matches = WORDS.filter((w) => w.startsWith(word));
  return matches.length === 1 ? matches[0] : undefined;
}

/** A code read from what a person typed. */
export interface TransferCode {
  /** The signaling session's number (what `joinSession` takes). */
  session: number;
  /** The canonical text (`7-maple-orbit`): the PAKE password. */
  text: string;
}

/**
 * Reads a code as a person types it. `strict` (what `peers receive` does) refuses a
 * word not in the list (`BadCode`) before anything is sent; without it such a word is
 * kept as typed, so the PAKE refuses it (`WrongCode`) and the sender burns the code.
 * Either way a unique 4-letter prefix is expanded.
 */
export function parseCode(typed: string, strict = true): TransferCode {
  if (new TextEncoder().encode(typed).length > MAX_CODE_LEN) throw badCode(`longer than ${MAX_CODE_LEN} bytes`);
  const parts = typed.trim().toLowerCase().split(/[\s-]+/).filter((p) => p.length > 0);
  const [number, ...words] = parts;
  if (number === undefined || !/^\d+$/.test(number)) throw badCode("a code is a number and 2 to 4 words");
  const session = Number(number);
  checkSession(session);
  if (words.length < MIN_WORDS || words.length > MAX_WORDS) throw badCode(`a code has ${MIN_WORDS} to ${MAX_WORDS} words after the number, not ${words.length}`);
  const canonical = words.map((w) => {
    const known = expandWord(w);
    if (known === undefined && strict) throw badCode(`${JSON.stringify(w)} is not a code word`);
    return known ?? w;
  });
  return { session, text: [String(session), ...canonical].join("-") };
}

/** A fresh code for `session` with `words` random words (clamped to 2..=4). */
export function generateCode(session: number, words = DEFAULT_WORDS, random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))): TransferCode {
  checkSession(session);
  const picked = random(Math.min(MAX_WORDS, Math.max(MIN_WORDS, words)));
  return { session, text: [String(session), ...Array.from(picked, (b) => WORDS[b]!)].join("-") };
}
