#include "pipeline/util/net.h"
#include "tests/support/test_support.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "pipeline/exec/worker_client.h"
#include "pipeline/util/error.h"

namespace petal::test {

TempDir::TempDir() {
  std::random_device device;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = fs::temp_directory_path() / ("petal-test-" + std::to_string(device()));
    if (fs::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temp dir");
}

std::string TempDir::relative(std::string text) const {
  const std::string prefix = path_.string() + "/";
  for (std::size_t at; (at = text.find(prefix)) != std::string::npos;) text.erase(at, prefix.size());
  return text;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, const std::string& content) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

void write_bmp(const fs::path& path, int seed, int width, int height) {
  const int row = (width * 3 + 3) & ~3;
  const std::uint32_t pixels = static_cast<std::uint32_t>(row * height), size = 54 + pixels;
  std::string bmp(size, '\0');
  const auto put16 = [&](int at, std::uint16_t v) { bmp[at] = char(v & 255); bmp[at + 1] = char(v >> 8); };
  const auto put32 = [&](int at, std::uint32_t v) { for (int i = 0; i < 4; ++i) bmp[at + i] = char((v >> (8 * i)) & 255); };
  bmp[0] = 'B';
  bmp[1] = 'M';
  put32(2, size);
  put32(10, 54);
  put32(14, 40);
  put32(18, static_cast<std::uint32_t>(width));
  put32(22, static_cast<std::uint32_t>(height));
  put16(26, 1);
  put16(28, 24);
  put32(34, pixels);
  std::uint64_t state = 0x9e3779b97f4a7c15ULL * (static_cast<std::uint64_t>(seed) + 1);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        state ^= state << 13;  // xorshift64: every seed gives its own pixels
        state ^= state >> 7;
        state ^= state << 17;
        bmp[54 + y * row + x * 3 + c] = char(state & 255);
      }
    }
  }
  write_file(path, bmp);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int run_command(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  std::string text;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) text.append(buffer, n);
  const int status = ::pclose(pipe);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

namespace {
}  // namespace

HttpServer::HttpServer(const fs::path& root) {
  port_ = free_loopback_port();
  pid_ = ::fork();
  if (pid_ == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    const std::string port = std::to_string(port_);
    ::execlp("python3", "python3", "-m", "http.server", port.c_str(), "--bind", "127.0.0.1", "--directory",
             root.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 200; ++i) {  // wait until it accepts connections (at most ~10 s)
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (up) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("the test HTTP server did not start");
}

HttpServer::~HttpServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::string HttpServer::url(const std::string& name) const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/" + name;
}

ExperimentRun run_experiment(const TempDir& dir, const std::string& text, std::vector<std::string> overrides) {
  write_file(dir / "x.toml", text);
  const Experiment e = load_experiment(dir / "x.toml", test_registry(), LoadOptions{std::move(overrides)});
  const Graph g = Graph::build(e, test_registry());
  StageCache cache(dir / "state/cache");
  DigestCache digests(dir / "state/digests.tsv");
  RunLog log(dir / "state/runs.log");
  const Plan plan = make_plan(g, cache, digests, false);
  ExecutionObserver quiet;
  ExecuteOptions options;
  options.run_id = "r";
  options.experiment = e.name;
  options.base_dir = dir.path();
  ExperimentRun run;
  run.result = execute(plan, cache, log, quiet, options);
  for (const auto& sp : plan.stages) {
    run.out[sp.node->name()] = cache.out_dir(sp.key);
    run.by_stage[sp.node->name()] = run.result.outcomes[sp.node->index];
  }
  return run;
}

std::string petal_binary() { return PETAL_BINARY; }
fs::path source_dir() { return PETAL_SOURCE_DIR; }

namespace {

std::mutex counter_mutex;

void count_execution(const std::string& stage) {
  const char* counter = std::getenv("PETAL_TEST_COUNTER");
  if (!counter) return;
  std::lock_guard<std::mutex> lock(counter_mutex);
  std::ofstream(counter, std::ios::app) << stage << "\n";
}

void pause_and_maybe_fail(StageContext& ctx) {
  const auto sleep_ms = ctx.params.at("sleep_ms").get<long long>();
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(sleep_ms);
  while (std::chrono::steady_clock::now() < until) {
    if (ctx.cancelled && ctx.cancelled()) throw StageCancelled();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (ctx.params.at("fail").get<bool>()) throw PetalError("emit failed on purpose", {}, kExitStageFailed);
}

// The parameters every test kind shares: what to write, and how to behave.
std::vector<ParamSpec> behaviour_params(const std::string& text_default, const std::string& text_help) {
  return {ParamSpec::text("text", text_default, text_help),
          ParamSpec::integer("sleep_ms", 0, "pause before finishing").at_least(0),
          ParamSpec::boolean("fail", false, "fail instead of finishing")};
}

StageKind emit_kind() {
  StageKind kind;
  kind.name = "emit";
  kind.version = "emit/1";
  kind.params = behaviour_params("hello", "what to write");
  kind.params.push_back(ParamSpec::real("rate", 0.5, "a number").greater_than(0).at_most(1));
  kind.run = [](StageContext& ctx) {
    count_execution(ctx.stage_name);
    pause_and_maybe_fail(ctx);
    std::ofstream(ctx.output_dir / "value.txt") << ctx.params.at("text").get<std::string>();
    ctx.report.metric("length", static_cast<double>(ctx.params.at("text").get<std::string>().size()));
  };
  return kind;
}

StageKind concat_kind() {
  StageKind kind;
  kind.name = "concat";
  kind.version = "concat/1";
  kind.params = behaviour_params("", "appended after the inputs");
  kind.run = [](StageContext& ctx) {
    count_execution(ctx.stage_name);
    pause_and_maybe_fail(ctx);
    std::string text;
    for (const auto& [name, dir] : ctx.inputs) text += read_file(dir / "value.txt");
    text += ctx.params.at("text").get<std::string>();
    std::ofstream(ctx.output_dir / "value.txt") << text;
  };
  return kind;
}

StageKind via_worker_kind() {
  StageKind kind;
  kind.name = "via-worker";
  kind.version = "via-worker/1";
  kind.params = behaviour_params("w", "appended after the inputs");
  kind.run = [](StageContext& ctx) { run_in_worker(ctx, "via-worker", "petal_test_worker"); };
  return kind;
}

}  // namespace

std::string test_worker() { return PETAL_TEST_WORKER; }

fs::path datasets_dir() {
  const char* datasets = std::getenv("PETAL_DATASETS");
  return datasets && *datasets ? fs::path(datasets) : (source_dir() / "../shared/datasets").lexically_normal();
}

fs::path newest_stage_output(const fs::path& state_dir, const std::string& stage) {
  fs::path found;
  fs::file_time_type newest{};
  std::error_code ec;
  for (fs::recursive_directory_iterator it(state_dir / "cache" / "entries", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() != "manifest.json") continue;
    if (nlohmann::json::parse(read_file(it->path())).value("stage", "") != stage) continue;
    if (found.empty() || it->last_write_time() > newest) {
      found = it->path().parent_path() / "out";
      newest = it->last_write_time();
    }
  }
  return found;
}

const StageRegistry& test_registry() {
  static const StageRegistry registry = [] {
    StageRegistry r;
    register_builtin_stages(r);
    r.add(emit_kind());
    r.add(concat_kind());
    r.add(via_worker_kind());
    return r;
  }();
  return registry;
}

int spawn_in_process_group(const std::string& command) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

void kill_process_group(int pid) {
  kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

fs::path wait_for_sweep_state(const fs::path& state_dir, const std::function<bool(const SweepState&)>& ready,
                              double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_dir / "sweeps", ec)) {
      if (entry.path().extension() != ".json") continue;
      try {
        if (const auto state = SweepState::load(entry.path()); state && ready(*state)) return entry.path();
      } catch (const PetalError&) {
        // caught between writes: look again
      }
    }
  }
  return {};
}

}  // namespace petal::test
