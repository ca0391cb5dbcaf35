#!/usr/bin/env -S node --max-semi-space-size=32 --min-semi-space-size=16
import { run } from '../src/commands/main.js';

void run(process.argv);
