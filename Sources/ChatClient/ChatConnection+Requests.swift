import ChatDomain
import Foundation

/// Typed requests: each decodes its `ok` data into the client's types.
extension ChatConnection {
    public func openDirect(with user: String, completion: @escaping (Result<Conversation, ChatClientError>) -> Void) {
        request(.openDirect(userID: user)) { completion($0.decoding { Conversation(json: $0["conversation"]) }) }
    }

    public func createGroup(name: String, members: [String], completion: @escaping (Result<Conversation, ChatClientError>) -> Void) {
        request(.createGroup(name: name, members: members)) {
            completion($0.decoding { Conversation(json: $0["conversation"]) })
        }
    }

    public func listConversations(limit: Int = 50, completion: @escaping (Result<[ConversationSummary], ChatClientError>) -> Void) {
        request(.listConversations(limit: limit)) {
            completion($0.decoding { $0["conversations"]?.arrayValue?.compactMap(ConversationSummary.init(json:)) })
        }
    }

    /// One page of conversations and the cursor of the next (nil on the last).
    public func listConversations(limit: Int, before: ConversationCursor?,
                                  completion: @escaping (Result<(conversations: [ConversationSummary], next: ConversationCursor?), ChatClientError>) -> Void) {
        request(.listConversations(limit: limit, before: before)) {
            completion($0.decoding { data in
                guard let list = data["conversations"]?.arrayValue?.compactMap(ConversationSummary.init(json:)) else { return nil }
                return (list, data["next"]?.stringValue.flatMap(ConversationCursor.init))
            })
        }
    }

    /// Sends a message; `clientID` makes a resend (after a reconnect) store it once.
    public func send(_ text: String, to conversation: String, clientID: String = UUID().uuidString.lowercased(),
                     completion: @escaping (Result<MessageAck, ChatClientError>) -> Void) {
        request(.send(conversationID: conversation, clientID: clientID, text: text)) {
            completion($0.decoding { MessageAck(json: .object($0)) })
        }
    }

    public func edit(_ messageID: String, in conversation: String, text: String,
                     completion: @escaping (Result<ChatMessage, ChatClientError>) -> Void) {
        request(.edit(conversationID: conversation, messageID: messageID, text: text)) {
            completion($0.decoding { ChatMessage(json: $0["message"]) })
        }
    }

    public func delete(_ messageID: String, in conversation: String, completion: @escaping (Result<ChatMessage, ChatClientError>) -> Void) {
        request(.delete(conversationID: conversation, messageID: messageID)) {
            completion($0.decoding { ChatMessage(json: $0["message"]) })
        }
    }

    public func history(_ query: HistoryQuery, completion: @escaping (Result<HistoryPage, ChatClientError>) -> Void) {
        request(.history(query)) {
            completion($0.decoding { data in
                HistoryPage(conversationID: query.conversationID,
                            messages: data["messages"]?.arrayValue?.compactMap { ChatMessage(json: $0) } ?? [],
                            hasMore: data["hasMore"]?.boolValue ?? false)
            })
        }
    }

    /// One directory page and the `after` of the next (nil on the last).
    public func users(_ query: UsersQuery, completion: @escaping (Result<(users: [DirectoryUser], next: String?), ChatClientError>) -> Void) {
        request(.usersQuery(query)) {
            completion($0.decoding { data in
                (data["users"]?.arrayValue?.compactMap(DirectoryUser.init(json:)) ?? [], data["next"]?.stringValue)
            })
        }
    }

    /// Watches users' presence (again after every reconnect); the reply is their current state.
    public func subscribePresence(_ users: [String], completion: @escaping (Result<[PresenceSnapshot], ChatClientError>) -> Void) {
        request(.presenceSubscribe(userIDs: users)) {
            completion($0.decoding { $0["users"]?.arrayValue?.compactMap { PresenceSnapshot(json: $0) } })
        }
    }

    public func markRead(_ conversation: String, seq: Int64, completion: @escaping (Result<Int64, ChatClientError>) -> Void = { _ in }) {
        request(.read(conversationID: conversation, seq: seq)) { completion($0.decoding { $0["seq"]?.intValue }) }
    }

    public func typing(in conversation: String) {
        request(.typing(conversationID: conversation)) { _ in }
    }
}

extension Result where Success == [String: JSONValue], Failure == ChatClientError {
    /// Maps the `ok` data; data that does not have the expected shape is a protocol error.
    func decoding<T>(_ transform: ([String: JSONValue]) -> T?) -> Result<T, ChatClientError> {
        flatMap { data in
            transform(data).map(Result<T, ChatClientError>.success)
                ?? .failure(.server(code: "bad_reply", message: "unexpected reply \(JSONValue.object(data).text.prefix(200))"))
        }
    }
}
