import ChatDomain
import Foundation
import Testing

@Suite struct ProfileLimitsTests {
    @Test func shortValuesAreKeptAsTheyAre() {
        #expect(ProfileLimits.truncate("john_doe", maxBytes: 64) == "john_doe")
        #expect(ProfileLimits.truncate("", maxBytes: 64) == "")
        #expect(ProfileLimits.truncate(String(repeating: "a", count: 64), maxBytes: 64).utf8.count == 64)
    }

    @Test func asciiIsCutAtTheCap() {
        #expect(ProfileLimits.truncate(String(repeating: "a", count: 65), maxBytes: 64) == String(repeating: "a", count: 64))
        #expect(ProfileLimits.truncate("abc", maxBytes: 0) == "")
    }

    /// "é" is 2 bytes, "€" 3, "🎉" 4: a cut that would fall inside one drops the whole character.
    @Test(arguments: [("é", 2), ("€", 3), ("🎉", 4)])
    func aMultiByteCharacterIsNeverSplit(character: String, width: Int) {
        for offset in 0..<width {
            // The cap falls `width - 1 - offset` bytes into the character, or right before it.
            let text = String(repeating: "a", count: 10 + offset) + character + "zz"
            let cut = ProfileLimits.truncate(text, maxBytes: 10 + width - 1)
            #expect(cut == String(repeating: "a", count: 10 + offset))
            #expect(!cut.unicodeScalars.contains { $0.value == 0xFFFD })   // no broken sequence decoded
        }
        let exact = "ab" + character
        #expect(ProfileLimits.truncate(exact + "c", maxBytes: 2 + width) == exact)
        #expect(ProfileLimits.truncate(exact, maxBytes: 1 + width) == "ab")
    }

    @Test func onlyMultiByteCharactersCutToWholeOnes() {
        let text = String(repeating: "🎉", count: 100)   // 400 bytes
        let cut = ProfileLimits.truncate(text, maxBytes: 63)
        #expect(cut == String(repeating: "🎉", count: 15))   // 60 bytes: a 16th would need 64
    }

    @Test func everyProfileFieldHasItsCap() {
        let long = String(repeating: "x", count: 5000)
        let p = ProfileLimits.capped(UserProfile(clerkID: "user_1", username: long, email: long, firstName: long,
                                                 lastName: long, imageURL: long))
        #expect(p.clerkID == "user_1")
        #expect(p.username?.utf8.count == 64)
        #expect(p.email?.utf8.count == 320)
        #expect(p.firstName?.utf8.count == 256)
        #expect(p.lastName?.utf8.count == 256)
        #expect(p.imageURL?.utf8.count == 2048)
        #expect(ProfileLimits.capped(UserProfile(clerkID: "u")) == UserProfile(clerkID: "u"))
    }

    @Test func aWebhookWithAHugeUsernameIsStoredCut() throws {
        let body = """
        {"type":"user.updated","timestamp":1,"data":{"id":"user_1","username":"\(String(repeating: "ü", count: 1000))",
         "first_name":"Zoë","updated_at":5}}
        """
        guard case .userUpserted(_, let profile, _) = try ClerkEvent.decode(Array(body.utf8)) else {
            Issue.record("not a user event"); return
        }
        #expect(profile.username == String(repeating: "ü", count: 32))   // 2 bytes each: 64
        #expect(profile.firstName == "Zoë")
    }
}

@Suite struct UserDirectoryTests {
    @Test func onlyAWholeAddressShapeIsMatchedAsAnEmail() {
        #expect(UserDirectory.couldBeEmail("john@example.com"))
        #expect(UserDirectory.couldBeEmail("JOHN@EXAMPLE.COM"))
        #expect(UserDirectory.couldBeEmail("john@"))          // matched whole, so it finds no one
        #expect(!UserDirectory.couldBeEmail("john"))
        #expect(!UserDirectory.couldBeEmail("john @x.io"))
        #expect(!UserDirectory.couldBeEmail("john@x.io\n"))
    }
}

@Suite struct PageBudgetTests {
    func take(_ budget: inout PageBudget, _ bytes: Int) -> Bool { budget.take(bytes) }

    @Test func itemsAreTakenWhileTheyFit() {
        var budget = PageBudget(bytes: 100)
        #expect(take(&budget, 40))
        #expect(take(&budget, 60))
        #expect(!take(&budget, 1))
        #expect(budget.taken == 2)
    }

    @Test func theFirstItemIsAlwaysTakenSoPagingProgresses() {
        var budget = PageBudget(bytes: 100)
        #expect(take(&budget, 5000))
        #expect(!take(&budget, 1))
    }

    @Test func aSkippedItemEndsNothingButItself() {
        var budget = PageBudget(bytes: 100)
        #expect(take(&budget, 50))
        #expect(!take(&budget, 51))
        #expect(take(&budget, 50))   // callers stop at the first refusal to keep pages contiguous
    }

    @Test func thePageBoundIsAQuarterOfTheOutboundLimitAtMost256KiB() {
        #expect(PageBudget.pageBytes(outboundLimit: 1 << 20) == 256 * 1024)
        #expect(PageBudget.pageBytes(outboundLimit: 64 << 20) == 256 * 1024)
        #expect(PageBudget.pageBytes(outboundLimit: 4096) == 1024)
    }

    @Test func sizeIsTheEncodedJSONAndItsComma() {
        #expect(PageBudget.size(of: ["text": .string("\u{1}")]) == #"{"text":"\u0001"}"#.utf8.count + 1)
    }
}

@Suite struct RetryPolicyTests {
    @Test func waitsGrowExponentiallyUpToTheCap() {
        let p = RetryPolicy(budget: 10, base: 0.01, cap: 0.1)
        #expect([1, 2, 3, 4, 5, 40].map { p.ceiling(retry: $0) } == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    }

    @Test func theWaitIsJitteredBelowTheCeiling() {
        let p = RetryPolicy(budget: 10, base: 0.01, cap: 0.1)
        #expect(p.delay(retry: 3, elapsed: 0, random: 0) == 0)
        #expect(p.delay(retry: 3, elapsed: 0, random: 0.5) == 0.02)
        #expect(p.delay(retry: 3, elapsed: 0, random: 0.999)! < 0.04)
    }

    @Test func theBudgetBoundsTheTotalTime() {
        let p = RetryPolicy(budget: 1, base: 0.01, cap: 0.25)
        #expect(p.delay(retry: 9, elapsed: 0.7, random: 0.9) != nil)     // 0.7 + 0.225 fits
        #expect(p.delay(retry: 9, elapsed: 0.9, random: 0.9) == nil)     // 0.9 + 0.225 > 1
        #expect(p.delay(retry: 9, elapsed: 0.9, random: 0.2) != nil)     // 0.9 + 0.05 fits
        #expect(RetryPolicy(budget: 0).delay(retry: 1, elapsed: 0, random: 0) == nil)   // one attempt only
        // Summed, the waits a loop takes never pass the budget.
        var elapsed = 0.0, retry = 1
        while let wait = p.delay(retry: retry, elapsed: elapsed, random: 0.99) { elapsed += wait; retry += 1 }
        #expect(elapsed <= 1 && retry > 5)
    }
}
