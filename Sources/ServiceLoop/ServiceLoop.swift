import Foundation
import Synchronization

/// The service thread: the one thread that owns the sockets and every connection's state, and its
/// inbox. Other threads (database workers, change feeds, timers, signals) reach it only through
/// `post`, which queues a closure and wakes the thread. State that belongs to the thread is handed to
/// other threads only inside a `ServiceBound`, which checks that it is opened on the thread again:
/// the model is swift-nio's `EventLoop` with `NIOLoopBound`.
public final class ServiceLoop: Sendable {
    private struct Inbox {
        var work: [@Sendable () -> Void] = []
        var wake: (@Sendable () -> Void)?
        var stopRequested = false
    }

    private let inbox = Mutex(Inbox())
    /// The owning thread, once `enter()` has run (0 before).
    private let owner = Atomic<UInt>(0)

    public init() {}

    /// Makes the calling thread the service thread; once per loop.
    public func enter() {
        let (exchanged, _) = owner.compareExchange(expected: 0, desired: Self.currentThread, ordering: .acquiringAndReleasing)
        precondition(exchanged, "ServiceLoop.enter() called twice")
    }

    public var inLoop: Bool { owner.load(ordering: .relaxed) == Self.currentThread }

    /// Traps when called off the service thread: every entry that touches its state calls this.
    @inline(__always)
    public func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inLoop, "not on the service thread", file: file, line: line)
    }

    /// How the loop is woken (libwebsockets: `lws_cancel_service`). Set once the loop can be woken.
    public func setWaker(_ wake: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.wake = wake }
    }

    /// Queues `work` for the service thread and wakes it. Safe from any thread.
    public func post(_ work: @escaping @Sendable () -> Void) {
        let wake = inbox.withLock { state -> (@Sendable () -> Void)? in
            state.work.append(work)
            return state.wake
        }
        wake?()
    }

    /// Asks the loop to stop after its current pass. Safe from any thread.
    public func stop() {
        let wake = inbox.withLock { state -> (@Sendable () -> Void)? in
            state.stopRequested = true
            return state.wake
        }
        wake?()
    }

    public var isStopRequested: Bool { inbox.withLock { $0.stopRequested } }

    /// Runs what was posted (on the service thread, when woken).
    public func drain() {
        preconditionInLoop()
        let work = inbox.withLock { state -> [@Sendable () -> Void] in
            let taken = state.work
            state.work.removeAll(keepingCapacity: true)
            return taken
        }
        for item in work { item() }
    }

    private static var currentThread: UInt {
        #if canImport(Darwin)
        UInt(bitPattern: pthread_self())
        #else
        UInt(pthread_self())
        #endif
    }
}

/// A value that belongs to the service thread, carried through other threads unopened (a completion
/// closure, a session): made and opened only on the service thread, which both check.
public struct ServiceBound<Value>: @unchecked Sendable {   // unchecked: `value` checks the thread
    private let stored: Value
    public let loop: ServiceLoop

    public init(_ value: Value, loop: ServiceLoop) {
        loop.preconditionInLoop()
        stored = value
        self.loop = loop
    }

    public var value: Value {
        loop.preconditionInLoop()
        return stored
    }
}
