import { Controller, Get } from '@nestjs/common';
import { OBJECT_OPENAPI } from './openapi';

/** The OpenAPI description of this app's routes. */
@Controller('docs')
export class DocsController {
  @Get()
  docs(): typeof OBJECT_OPENAPI {
    return OBJECT_OPENAPI;
  }
}
