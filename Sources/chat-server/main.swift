import ArgumentParser
import ChatServer
import Foundation
import Logging

ChatServerCommand.main()
