#!/usr/bin/env -S node --max-semi-space-size=32
import { run } from '../src/commands/main.js';

void run(process.argv);
