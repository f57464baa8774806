// claw-cage e2e stand-in: `node` (a busybox script) checks this file exists, as Node would.
