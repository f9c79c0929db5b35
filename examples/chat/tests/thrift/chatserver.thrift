// The interface of the Python "Thrift chat room" course project
// (`chatserver.thrift` of the public repository 789456QWE/-Thrift-), method for
// method: every call takes one JSON string (field 1) and returns a string.
// `show_group_mem` is in the interface but the original server never
// implemented it.
//
// tests/thrift.rs generates the Python client from this file with Debian's
// `thrift --gen py` and drives it with Debian's python3-thrift (client.py).

const bool OK = 1
const bool ERR = 0

service ChatServer {
    string regist(1: string request)
    string login(1: string request)
    string chat_default_group(1: string request)
    string show_default_group_mem(1: string request)
    string show_groups(1: string request)
    string chat_with_single(1: string request)
    string create_group(1: string request)
    string search_group(1: string request)
    string add_group(1: string request)
    string chat_group(1: string request)
    string show_group_mem(1: string request)
    string recv(1: string request)
}
