import ChatClient
import ChatDomain
import Foundation
import Testing

@Suite struct MessageLedgerTests {
    func m(_ seq: Int64, in c: String = "dm:a:b") -> ChatMessage {
        ChatMessage(id: "m\(c)\(seq)", conversationID: c, seq: seq, senderID: "a", clientID: "c\(seq)", text: "\(seq)", createdAt: Date())
    }

    @Test func inOrderMessagesPassAndRepeatsDoNot() {
        var ledger = MessageLedger(positions: ["dm:a:b": 0])
        #expect(ledger.receive(m(1)).deliver.map(\.seq) == [1])
        #expect(ledger.receive(m(2)).deliver.map(\.seq) == [2])
        #expect(ledger.receive(m(2)).deliver.isEmpty)
        #expect(ledger.receive(m(1)).deliver.isEmpty)
        #expect(ledger.positions["dm:a:b"] == 2)
    }

    @Test func aRestartedClientDropsWhatItsSavedPositionCovers() {
        // No seen ids after a restart: the position alone keeps old messages out.
        var ledger = MessageLedger(positions: ["dm:a:b": 5])
        let sync = ledger.applyPage("dm:a:b", [m(4), m(5), m(6), m(7)], hasMore: false)
        #expect(sync.deliver.map(\.seq) == [6, 7])
    }

    @Test func aGapIsHeldUntilHistoryFillsIt() {
        var ledger = MessageLedger(positions: ["dm:a:b": 3])
        let gap = ledger.receive(m(6))
        #expect(gap.deliver.isEmpty && gap.fills == ["dm:a:b": 3])
        #expect(ledger.receive(m(7)).deliver.isEmpty)                 // held behind the fill
        let filled = ledger.applyPage("dm:a:b", [m(4), m(5), m(6)], hasMore: false)
        #expect(filled.deliver.map(\.seq) == [4, 5, 6, 7])
        #expect(ledger.filling.isEmpty)
    }

    @Test func liveMessagesDuringSyncWaitAndComeOutOnceInOrder() {
        var ledger = MessageLedger(positions: ["dm:a:b": 1])
        ledger.beginSync()
        #expect(ledger.receive(m(4)).deliver.isEmpty)
        #expect(ledger.receive(m(3)).deliver.isEmpty)
        let page = ledger.applyPage("dm:a:b", [m(2), m(3)], hasMore: false)
        #expect(page.deliver.map(\.seq) == [2, 3])
        #expect(ledger.endSync().deliver.map(\.seq) == [4])
    }

    @Test func aLongCatchUpPagesOnAndKeepsLiveMessagesBack() {
        var ledger = MessageLedger(positions: ["g_x": 0])
        ledger.beginSync()
        let first = ledger.applyPage("g_x", [m(1, in: "g_x"), m(2, in: "g_x")], hasMore: true)
        #expect(first.fills == ["g_x": 2])
        #expect(ledger.endSync().deliver.isEmpty)
        #expect(ledger.receive(m(5, in: "g_x")).deliver.isEmpty)
        let rest = ledger.applyPage("g_x", [m(3, in: "g_x"), m(4, in: "g_x")], hasMore: false)
        #expect(rest.deliver.map(\.seq) == [3, 4, 5])
    }

    @Test func aDropForgetsHeldMessagesWithoutMovingPositions() {
        var ledger = MessageLedger(positions: ["dm:a:b": 1])
        _ = ledger.receive(m(3))
        ledger.discardHeld()
        #expect(ledger.positions["dm:a:b"] == 1)
        #expect(ledger.receive(m(2)).deliver.map(\.seq) == [2])
        #expect(ledger.receive(m(3)).deliver.map(\.seq) == [3])
    }

    @Test func aNewConversationStartsAtItsBaselineOrItsFirstMessage() {
        var ledger = MessageLedger()
        ledger.baseline("g_new", seq: 10)
        #expect(ledger.receive(m(10, in: "g_new")).deliver.isEmpty)
        #expect(ledger.receive(m(11, in: "g_new")).deliver.map(\.seq) == [11])
        #expect(ledger.receive(m(7, in: "g_other")).deliver.map(\.seq) == [7])
    }
}

@Suite struct BackoffTests {
    @Test func delaysStayUnderTheDoublingCeilingAndTheCap() {
        var backoff = Backoff(base: 0.5, cap: 4)
        let ceilings: [Double] = [0.5, 1, 2, 4, 4, 4]
        for ceiling in ceilings { #expect((0...ceiling).contains(backoff.next())) }
        backoff.reset()
        #expect(backoff.next() <= 0.5)
    }
}
