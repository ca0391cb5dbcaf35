#!/usr/bin/env node
import { run } from '../src/commands/main.js';

void run(process.argv);
