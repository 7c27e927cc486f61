import { Controller, Get } from '@nestjs/common';
import { MULTIPART_OPENAPI } from './openapi';

/** The OpenAPI description of this app's routes. */
@Controller('docs')
export class DocsController {
  @Get()
  docs(): typeof MULTIPART_OPENAPI {
    return MULTIPART_OPENAPI;
  }
}
