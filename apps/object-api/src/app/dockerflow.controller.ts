import { Controller, Get } from '@nestjs/common';

/** Dockerflow endpoints Taskcluster services serve. */
@Controller()
export class DockerflowController {
  @Get('__heartbeat__')
  heartbeat(): Record<string, never> {
    return {};
  }

  @Get('__lbheartbeat__')
  lbheartbeat(): Record<string, never> {
    return {};
  }

  @Get('__version__')
  version(): { source: string; version: string; commit: string; build: string } {
    return { source: 'https://github.com/ferry/ferry', version: '0.1.0', commit: 'unknown', build: 'local' };
  }
}
