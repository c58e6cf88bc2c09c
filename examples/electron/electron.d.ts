// Just the part of Electron's API this example uses, so that it type-checks without the
// `electron` package (whose install downloads a binary). In a real app, install
// `electron` and delete this file: its own types are a superset of these.
declare namespace NodeJS {
  interface Process {
    /** Electron: the app's resources folder (where `extraResources` land). */
    readonly resourcesPath: string;
  }
}

declare module "electron" {
  interface WebContents {
    send(channel: string, ...args: unknown[]): void;
    isDestroyed(): boolean;
  }

  interface WebPreferences {
    preload?: string;
    contextIsolation?: boolean;
    nodeIntegration?: boolean;
    sandbox?: boolean;
  }

  interface BrowserWindowConstructorOptions {
    width?: number;
    height?: number;
    title?: string;
    webPreferences?: WebPreferences;
  }

  class BrowserWindow {
    constructor(options?: BrowserWindowConstructorOptions);
    readonly webContents: WebContents;
    loadFile(filePath: string): Promise<void>;
    static getAllWindows(): BrowserWindow[];
  }

  interface Event {
    preventDefault(): void;
  }

  interface App {
    readonly isPackaged: boolean;
    whenReady(): Promise<void>;
    getPath(name: "home" | "appData" | "userData" | "temp" | "logs"): string;
    getAppPath(): string;
    quit(): void;
    on(event: "before-quit", listener: (event: Event) => void): this;
    on(event: "window-all-closed" | "activate", listener: () => void): this;
  }

  interface IpcMainInvokeEvent {
    readonly sender: WebContents;
  }

  interface IpcMain {
    handle(channel: string, listener: (event: IpcMainInvokeEvent, ...args: any[]) => unknown): void;
  }

  interface IpcRendererEvent {
    readonly sender: unknown;
  }

  interface IpcRenderer {
    invoke(channel: string, ...args: unknown[]): Promise<any>;
    on(channel: string, listener: (event: IpcRendererEvent, ...args: any[]) => void): this;
    removeListener(channel: string, listener: (...args: any[]) => void): this;
  }

  interface ContextBridge {
    exposeInMainWorld(apiKey: string, api: unknown): void;
  }

  const app: App;
  const ipcMain: IpcMain;
  const ipcRenderer: IpcRenderer;
  const contextBridge: ContextBridge;
}
