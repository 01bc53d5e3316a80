/**
 * Files written by repair: fix.<table>.sql (written under a temporary
 * name, renamed when complete, so a half-written file never has the
 * final name) and key spools for --apply, and where fix files may go:
 * only inside the worker's repair_dir, whatever a request names. Writes
 * wait for the stream to drain: memory stays flat.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { mkdir, realpath, rename, rm, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
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

/** Longest table part of a fix file name (file names are limited to 255 bytes). */
const MAX_NAME_CHARS = 120;

/**
 * fix.<table>.sql, safe to type on a shell command line: the table's
 * canonical name with quotes dropped and every character other than a
 * letter, a digit, `_`, `.` or `-` made `_`. When that changed the name
 * (or it was too long), a short hash of the real name follows, so two
 * tables never share a file: `public."Odd ""T"""` → `fix.public.Odd_T-1f0c3a.sql`.
 * The reply lists each table with its file.
 */
export function fixFileName(table: string): string {
  const plain = table.replace(/"/g, "").replace(/[^\p{L}\p{N}_.-]/gu, "_");
  if (plain === table && plain.length <= MAX_NAME_CHARS) return `fix.${plain}.sql`;
  const hash = createHash("sha256").update(table).digest("hex").slice(0, 6);
  return `fix.${plain.slice(0, MAX_NAME_CHARS)}-${hash}.sql`;
}

export function fixFilePath(dir: string, table: string): string {
  return join(dir, fixFileName(table));
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

/** Whether `path` is `base` or inside it (both already absolute and free of symlinks). */
export function isInside(base: string, path: string): boolean {
  const rel = relative(base, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/**
 * The directory a request's fix files go to: `requested` (relative to
 * `base`, or absolute) must be an existing directory inside the worker's
 * repair_dir `base`, symlinks followed; no request names one elsewhere on
 * the worker's host. `base` itself is made when missing (owner only).
 */
export async function fixDirectory(base: string, requested: string | undefined): Promise<string> {
  try {
    await mkdir(base, { recursive: true, mode: 0o750 });
  } catch (error) {
    throw new CommandError("internal", `repair_dir ${base}: ${(error as Error).message}`);
  }
  const realBase = await realpath(base);
  const wanted = resolve(base, requested ?? ".");
  let real: string;
  try {
    real = await realpath(wanted);
    if (!(await stat(real)).isDirectory()) throw new CommandError("bad_request", `${wanted} is not a directory`);
  } catch (error) {
    if (error instanceof CommandError) throw error;
    throw new CommandError("bad_request", `directory ${wanted}: ${(error as Error).message}`);
  }
  if (!isInside(realBase, real)) {
    throw new CommandError("bad_request", `directory ${wanted} is outside this worker's repair_dir ${realBase}: fix files go only there (--dir names a folder inside it)`);
  }
  return real;
}
