/** A chunk of process output: text, bytes, or bytes as a plain number array (Tauri's raw IPC). */
export type Chunk = string | Uint8Array | ArrayBuffer | readonly number[];

/**
 * Splits a stream of chunks into lines (NDJSON framing).
 *
 * Chunk boundaries may fall anywhere: inside a line, inside a `\r\n`, inside a multi-byte
 * UTF-8 character (for byte chunks); one chunk may hold several lines. Lines are returned
 * without their `\n` / `\r\n`; empty lines are skipped. Work is linear in the input size.
 */
export class LineSplitter {
  private parts: string[] = [];
  private decoder: TextDecoder | undefined;

  /** Feeds one chunk; returns the lines it completed. */
  push(chunk: Chunk): string[] {
    const text = typeof chunk === "string" ? chunk : this.decode(chunk, true);
    const lines: string[] = [];
    let start = 0;
    let nl = text.indexOf("\n");
    while (nl !== -1) {
      let line = text.slice(start, nl);
      if (this.parts.length > 0) {
        this.parts.push(line);
        line = this.parts.join("");
        this.parts = [];
      }
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line.length > 0) lines.push(line);
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    if (start < text.length) this.parts.push(text.slice(start));
    return lines;
  }

  /** Ends the input; returns the last line if it had no newline. */
  flush(): string[] {
    const tail = this.decoder ? this.decoder.decode() : "";
    this.decoder = undefined;
    if (tail) this.parts.push(tail);
    let line = this.parts.join("");
    this.parts = [];
    if (line.endsWith("\r")) line = line.slice(0, -1);
    return line.length > 0 ? [line] : [];
  }

  private decode(chunk: Exclude<Chunk, string>, stream: boolean): string {
    this.decoder ??= new TextDecoder("utf-8");
    const bytes =
      chunk instanceof Uint8Array
        ? chunk
        : chunk instanceof ArrayBuffer
          ? new Uint8Array(chunk)
          : Uint8Array.from(chunk);
    return this.decoder.decode(bytes, { stream });
  }
}
