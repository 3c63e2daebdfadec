import type { EngineProfile } from "../../../core/engine/engine-profiles.ts";
import type { EngineUser } from "./engine-user.ts";

/** What an engine cache snapshot needs to know of the engine about to start. */
export interface EngineCacheContext {
  profile: EngineProfile;
  /** Where the model was materialised (its digest is part of the snapshot's key). */
  modelPath: string;
  /** The engine's environment, exactly as it is spawned with: where its cache directories are. */
  env: Readonly<Record<string, string>>;
  /** The user the engine runs as; undefined: the worker's own. */
  user?: EngineUser;
}

/**
 * Engine cache snapshots as the OpenAI engine sees them (implemented by
 * worker/engine-cache/engine-cache-snapshots.ts): a restore before the engine process starts, an
 * archive after its first healthy start. Neither ever fails the engine: a cache is an optimisation.
 */
export interface EngineCacheHooks {
  /** Fills the engine's empty cache directories from a snapshot, if one exists. Never throws. */
  restore(context: EngineCacheContext): Promise<void>;
  /** Archives the cache directories in the background when no snapshot exists yet. Never throws. */
  archive(context: EngineCacheContext): void;
  /** Stops an archive in progress (the engine, and its directories, are going away). */
  stop(): Promise<void>;
}
