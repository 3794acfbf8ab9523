import Logging
import NIOConcurrencyHelpers
import Testing

@testable import BrokerRuntime

/// `log.level` on SIGHUP: loggers made before the change follow it.
@Suite struct LogLevelSwitchTests {
    @Test func loggersFollowTheSwitch() {
        let lines = NIOLockedValueBox<[String]>([])
        let level = LogLevelSwitch(.info)
        let logger = Logger(label: "test") { label in
            level.handler(JSONLogHandler(label: label) { line in lines.withLockedValue { $0.append(line) } })
        }
        logger.debug("hidden")
        logger.info("shown")
        level.level = .debug
        logger.debug("now shown")
        level.level = .warning
        logger.info("hidden again")
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 2)
        #expect(written.first?.contains("\"msg\":\"shown\"") == true)
        #expect(written.last?.contains("\"msg\":\"now shown\"") == true)

        // A logger given its own level keeps it (a library's quieter copy).
        var quiet = logger
        quiet.logLevel = .error
        level.level = .trace
        quiet.warning("not written")
        logger.trace("written")
        #expect(lines.withLockedValue { $0.count } == 3)
    }
}
