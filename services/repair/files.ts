/**
 * Files written by repair: fix.<table>.sql (written under a temporary
 * name, renamed when complete, so a half-written file never has the
 * final name) and key spools for --apply. Writes wait for the stream to
 * drain: memory stays flat.
 */
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { CommandError } from "../../shared/bus/replies.ts";

export class LineWriter {
  private readonly stream: WriteStream;
  private failed: Error | undefined;
  lines = 0;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path, { flags: "w", encoding: "utf8" });
    this.stream.on("error", (error) => (this.failed = error));
  }

  async write(line: string): Promise<void> {
    if (this.failed) throw this.failed;
    this.lines++;
    if (!this.stream.write(`${line}\n`)) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        this.stream.once("error", onError);
        this.stream.once("drain", () => {
          this.stream.off("error", onError);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (this.failed) throw this.failed;
    await new Promise<void>((resolve, reject) => {
      this.stream.once("error", reject);
      this.stream.end(() => resolve());
    });
  }

  /** Closes and deletes the file. Never throws. */
  async discard(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (this.stream.closed || this.stream.destroyed) return resolve();
      this.stream.once("close", () => resolve());
      this.stream.destroy();
    });
    await rm(this.path, { force: true }).catch(() => {});
  }
}

/** fix.<table>.sql in dir: the table's canonical name, `/` replaced so it stays one file name. */
export function fixFilePath(dir: string, table: string): string {
  return join(dir, `fix.${table.replace(/[/\0]/g, "_")}.sql`);
}

/** The fix file, written to `<path>.tmp` and renamed by commit(). */
export class FixFile {
  private readonly writer: LineWriter;

  private constructor(
    readonly path: string,
    header: string,
  ) {
    this.writer = new LineWriter(`${path}.tmp`);
    void this.writer.write(header);
  }

  /** Deletes any earlier fix file of the table first (it exists only when differences were found). */
  static async open(path: string, header: string): Promise<FixFile> {
    await rm(path, { force: true });
    return new FixFile(path, header);
  }

  get statements(): number {
    return this.writer.lines - 1;
  }

  write(statement: string): Promise<void> {
    return this.writer.write(statement);
  }

  /** Renames the file into place when it holds statements, else deletes it. Returns the path or null. */
  async commit(): Promise<string | null> {
    await this.writer.close();
    if (this.statements === 0) {
      await rm(this.writer.path, { force: true });
      return null;
    }
    await rename(this.writer.path, this.path);
    return this.path;
  }

  discard(): Promise<void> {
    return this.writer.discard();
  }
}

/** Reads a spool of JSON lines back in chunks. */
export async function* readChunks<T>(path: string, size: number): AsyncGenerator<T[]> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  let chunk: T[] = [];
  for await (const line of lines) {
    if (line === "") continue;
    chunk.push(JSON.parse(line) as T);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** The directory fix files go to: it must exist. */
export async function checkDirectory(dir: string): Promise<void> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new CommandError("bad_request", `${dir} is not a directory`);
  } catch (error) {
    if (error instanceof CommandError) throw error;
    throw new CommandError("bad_request", `directory ${dir}: ${(error as Error).message}`);
  }
}
