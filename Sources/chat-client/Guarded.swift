import ArgumentParser
import Foundation

/// Runs a subcommand body, turning any failure into one `chat-client: ...` line on stderr and exit 1
/// (no stack traces, no "Error:" prefix from ArgumentParser).
func guarded(_ body: () throws -> Void) throws {
    do { try body() } catch let error as Failure {
        Output.fail(error.description)
    } catch let error as ExitCode {
        throw error
    } catch {
        Output.fail("\(error)")
    }
}
