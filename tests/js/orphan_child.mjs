// Starts a long-lived child process (as a browser driver starts Chromium) and
// prints its pid, for the test that a dropped JsClient ends its whole process
// group. The child is not detached, so it stays in the driver's group.

import { spawn } from "node:child_process";

const child = spawn("sleep", ["600"], { stdio: "ignore" });
console.log(JSON.stringify({ event: "spawned", pid: child.pid }));
setInterval(() => {}, 1 << 30);
