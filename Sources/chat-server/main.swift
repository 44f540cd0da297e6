import ArgumentParser
import ChatServer
import Foundation
import Logging

setvbuf(stdout, nil, _IOLBF, 0)
ChatServerCommand.main()
