// Headless Chromium for the tests that drive a browser page (cors_chromium.mjs,
// webrtc_chromium.mjs).
//
// Chromium is found through $CHROMIUM_PATH, else `chromium`, `chromium-browser`
// or `google-chrome` on $PATH. It runs headless, without sandbox or GPU (the
// tests run as root in containers), with background networking, component
// updates, sync and the first-run page off.

import puppeteer from "puppeteer-core";
import { execFileSync } from "node:child_process";
import { fail } from "./webrtc_signaling.mjs";

export function findChromium() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      return execFileSync("which", [name], { encoding: "utf8" }).trim();
    } catch {
      // not on PATH; try the next name
    }
  }
  fail("no Chromium found: set CHROMIUM_PATH or install Debian's chromium");
}

/// launchChromium(extraArgs): a headless browser with the flags above plus `extraArgs`.
export function launchChromium(extraArgs = []) {
  return puppeteer.launch({
    executablePath: findChromium(),
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...extraArgs,
    ],
  });
}
