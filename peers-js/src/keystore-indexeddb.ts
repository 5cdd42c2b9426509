/**
 * {@link IndexedDbKeyStore}: a browser device's keys in IndexedDB, the browser
 * counterpart of `FileKeyStore`. The value is the key file text (the Rust key file
 * format, `DeviceKeys.toKeyFile`), so keys move between a browser and a file
 * unchanged. IndexedDB is per origin: every script of the page's origin can read
 * the keys, as it could use them anyway; the store adds no encryption of its own.
 */
import { PeersError, invalidInput } from "./errors.js";
import { DeviceKeys, KeyStore } from "./identity.js";

const OBJECT_STORE = "keys";

function storageError(what: string, cause: unknown): PeersError {
  const detail = cause instanceof Error || cause instanceof DOMException ? cause.message : String(cause);
  return new PeersError("Transport", "Storage", `indexeddb ${what}: ${detail}`);
}

/** One request's result as a promise. */
function settled<T>(request: IDBRequest<T>, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(storageError(what, request.error));
  });
}

/**
 * Keys in IndexedDB (browsers): database `databaseName` (default "peers"), object
 * store "keys", entry `entry` (default "device"). `save` replaces the entry in one
 * transaction that resolves once committed; `load` refuses an entry that is not a
 * key file (`DeviceKeys.fromKeyFile`'s checks and size bound).
 */
export class IndexedDbKeyStore implements KeyStore {
  constructor(
    readonly databaseName = "peers",
    readonly entry = "device",
    private readonly factory: IDBFactory | undefined = globalThis.indexedDB,
  ) {}

  private open(): Promise<IDBDatabase> {
    const factory = this.factory;
    if (!factory) return Promise.reject(new PeersError("InvalidInput", "Unsupported", "this platform has no IndexedDB"));
    const request = factory.open(this.databaseName, 1);
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(OBJECT_STORE)) request.result.createObjectStore(OBJECT_STORE);
    };
    return settled(request, "open");
  }

  async load(): Promise<DeviceKeys | undefined> {
    const db = await this.open();
    try {
      const value: unknown = await settled(db.transaction(OBJECT_STORE, "readonly").objectStore(OBJECT_STORE).get(this.entry), "read");
      if (value === undefined) return undefined;
      if (typeof value !== "string") throw invalidInput("stored keys", "not a key file");
      return DeviceKeys.fromKeyFile(value);
    } finally {
      db.close();
    }
  }

  async save(keys: DeviceKeys): Promise<void> {
    const db = await this.open();
    try {
      const tx = db.transaction(OBJECT_STORE, "readwrite", { durability: "strict" });
      tx.objectStore(OBJECT_STORE).put(keys.toKeyFile(), this.entry);
      await new Promise<void>((resolve, reject) => {
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(storageError("write", tx.error));
        tx.onabort = () => reject(storageError("write aborted", tx.error));
      });
    } finally {
      db.close();
    }
  }
}
