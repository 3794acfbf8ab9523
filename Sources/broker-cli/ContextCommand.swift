import ArgumentParser
import Foundation

/// `broker-cli context save|ls|show|rm|select`: named connection profiles.
struct Context: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save and choose named connection settings (URL, token, CA, client certificate, API key).",
        discussion: """
            A context is a file $XDG_CONFIG_HOME/broker-cli/contexts/NAME.json (else \
            ~/.config/broker-cli/...), readable by its owner only. Commands use the one named by \
            --context, else $BROKER_CONTEXT, else the one `context select` chose; a flag or an \
            environment variable overrides a value of the context.
            """,
        subcommands: [Save.self, List.self, Show.self, Remove.self, Select.self])

    static var store: ContextStore { ContextStore(environment: Env.all) }

    struct Save: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Save (or replace) a context.")

        @Argument(help: "The context's name.")
        var name: String

        @Option(help: "Broker WebSocket URL.")
        var url: String?
        @Option(help: "Bearer token.")
        var token: String?
        @Option(name: .customLong("ca-file"), help: ArgumentHelp("PEM certificates to trust for wss://.", valueName: "file"))
        var caFile: String?
        @Option(help: ArgumentHelp("PEM client certificate.", valueName: "file"))
        var cert: String?
        @Option(help: ArgumentHelp("PEM private key of --cert.", valueName: "file"))
        var key: String?
        @Flag(help: "Do not verify the broker's certificate (testing only).")
        var insecure = false
        @Option(name: .customLong("api-key"), help: ArgumentHelp("The broker's API key.", valueName: "key"))
        var apiKey: String?
        @Option(name: .customLong("api-url"), help: ArgumentHelp("Base URL of the HTTP API.", valueName: "url"))
        var apiURL: String?
        @Option(help: "A note for `context ls`.")
        var description: String?
        @Flag(help: "Also select it.")
        var select = false

        func validate() throws {
            do { try ContextStore.validate(name: name) } catch { throw ValidationError(error.description) }
            if let url, !(url.hasPrefix("ws://") || url.hasPrefix("wss://")) {
                throw ValidationError("the URL must start with ws:// or wss://: \(url)")
            }
            if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        }

        func run() throws {
            // Files are saved as absolute paths: the context is used from any directory.
            func absolute(_ path: String?) -> String? {
                path.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
            }
            let context = CLIContext(
                description: description, url: url, token: token, caFile: absolute(caFile), certFile: absolute(cert),
                keyFile: absolute(key), insecure: insecure ? true : nil, apiKey: apiKey, apiURL: apiURL)
            do {
                try Context.store.save(context, as: name)
                if select { try Context.store.select(name) }
            } catch {
                fail(.brokerError, "cannot save context \(name): \(error)")
            }
            emit("saved context \(name) (\(Context.store.file(of: name).path))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List the contexts; * marks the selected one.")

        func run() throws {
            let store = Context.store
            let selected = store.selected
            for name in store.names {
                let context = try? store.load(name)
                let mark = name == selected ? "*" : " "
                let url = context?.url ?? "-"
                let note = context?.description.map { "  \($0)" } ?? ""
                emit("\(mark) \(name)  \(url)\(note)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a context as JSON (the selected one by default); secrets are masked.")

        @Argument(help: "The context's name (default: --context's rule: $BROKER_CONTEXT, else the selected one).")
        var name: String?

        @Flag(name: .customLong("show-secrets"), help: "Print the token and API key instead of masking them.")
        var showSecrets = false

        func run() throws {
            let store = Context.store
            guard let name = name ?? ConnectionSettings.contextName(flag: nil, environment: Env.all, store: store) else {
                fail(.badArguments, "no context selected; name one")
            }
            var context: CLIContext
            do {
                context = try store.load(name)
            } catch {
                fail(.badArguments, error.description)
            }
            if !showSecrets {
                context.token = context.token.map { _ in "********" }
                context.apiKey = context.apiKey.map { _ in "********" }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(context)) ?? Data()
            emit(String(decoding: data, as: UTF8.self))
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a context.")

        @Argument(help: "The context's name.")
        var name: String

        func run() throws {
            do {
                try Context.store.remove(name)
            } catch {
                fail(.badArguments, "\(error)")
            }
        }
    }

    struct Select: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a context the default for every command (without a name: print the selected one).")

        @Argument(help: "The context's name.")
        var name: String?

        func run() throws {
            guard let name else {
                guard let selected = Context.store.selected else { fail(.brokerError, "no context selected") }
                emit(selected)
                return
            }
            do {
                try Context.store.select(name)
            } catch {
                fail(.badArguments, "\(error)")
            }
        }
    }
}
