import type { DownloadHooks, MaterialisedModel, ModelSource } from "./model-source.ts";
import type { S3ModelSource, S3ModelSourceOptions } from "./s3-model-source.ts";

/**
 * An `s3://` source whose AWS SDK loads on the first `s3://` model it is asked for: every worker
 * of an openai engine holds an S3 source, but a `file://` or `https://` model never needs the
 * SDK, which took ~0.15 s of such a worker's cold start (and of each preload) to load.
 */
export class LazyS3ModelSource implements ModelSource {
  readonly schemes = ["s3:"] as const;
  readonly cacheScope: string | undefined;
  private source: Promise<S3ModelSource> | undefined;
  private loaded: S3ModelSource | undefined;

  constructor(private readonly options: S3ModelSourceOptions) {
    this.cacheScope = options.cacheScope;
  }

  private load(): Promise<S3ModelSource> {
    this.source ??= import("./s3-model-source.ts").then(({ S3ModelSource }) => (this.loaded = new S3ModelSource(this.options)));
    return this.source;
  }

  async authorize(uri: URL): Promise<void> {
    await (await this.load()).authorize(uri);
  }

  async materialise(uri: URL, destDir: string, signal?: AbortSignal, hooks?: DownloadHooks): Promise<string | MaterialisedModel> {
    return (await this.load()).materialise(uri, destDir, signal, hooks);
  }

  /** Closes the client, if one was ever made. */
  close(): void {
    this.loaded?.close();
  }
}
