import ChatDomain
import Foundation
import Testing

func fixture(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/clerk/\(name)")
    return Array(try Data(contentsOf: url))
}

@Suite struct ClerkEventTests {
    @Test func createdEventCarriesTheFullProfileAndPrimaryEmail() throws {
        let event = try ClerkEvent.decode(try fixture("user.created.json"))
        #expect(event == .userUpserted(type: "user.created", profile: UserProfile(
            clerkID: "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef", username: "john_doe", email: "john@example.com",
            firstName: "John", lastName: "Doe", imageURL: "https://img.clerk.com/eyJ0eXBlIjoicHJveHkiLCJzcmMiOiJqb2huIn0"),
            clerkUpdatedAt: 1763289000123))
    }

    @Test func updatedEventFindsTheNewPrimaryEmailByID() throws {
        guard case .userUpserted(_, let profile, _) = try ClerkEvent.decode(try fixture("user.updated.json")) else {
            Issue.record("not a user event"); return
        }
        #expect(profile.email == "john.smith@example.org")
        #expect(profile.username == "johnny")
        #expect(profile.lastName == "Doe-Smith")
    }

    @Test func minimalSignUpHasNullFieldsNotAFailure() throws {
        guard case .userUpserted(_, let profile, _) = try ClerkEvent.decode(try fixture("user.created.minimal.json")) else {
            Issue.record("not a user event"); return
        }
        #expect(profile.username == nil && profile.email == nil && profile.firstName == nil && profile.lastName == nil)
    }

    @Test func unicodeNamesSurvive() throws {
        guard case .userUpserted(_, let profile, _) = try ClerkEvent.decode(try fixture("user.created.unicode.json")) else {
            Issue.record("not a user event"); return
        }
        #expect(profile.username == "zoë" && profile.lastName == "Ångström 🎉" && profile.email == "zoe@example.com")
    }

    @Test func deletionIsOrderedByTheEnvelopeTimestamp() throws {
        #expect(try ClerkEvent.decode(try fixture("user.deleted.json")) == .userDeleted(clerkID: "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef", at: 1763299000000))
    }

    @Test func sessionEndedNamesTheSession() throws {
        #expect(try ClerkEvent.decode(try fixture("session.ended.json")) == .sessionEnded(
            type: "session.ended", sessionID: "sess_2Y3vSessionEnded0000000000", userID: "user_2Y3vQ8mNcT0aLbXk9pRj4sWd1Ef"))
    }

    @Test func otherTypesAreIgnored() throws {
        #expect(try ClerkEvent.decode(Array(#"{"type":"email.created","data":{"id":"x"},"object":"event"}"#.utf8)) == .ignored(type: "email.created"))
    }

    @Test(arguments: [
        "", "[]", "not json", #"{"data":{}}"#, #"{"type":"user.created"}"#, #"{"type":"user.created","data":[]}"#,
        #"{"type":"user.created","data":{"username":"x","updated_at":1}}"#, #"{"type":5,"data":{}}"#,
        #"{"type":"user.deleted","data":{"id":"user_1"}}"#,
    ])
    func bodiesThatAreNotClerkEventsAreRefused(body: String) {
        #expect(throws: ClerkEventError.self) { try ClerkEvent.decode(Array(body.utf8)) }
    }
}
