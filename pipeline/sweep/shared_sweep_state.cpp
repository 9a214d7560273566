#include "pipeline/sweep/shared_sweep_state.h"

#include "pipeline/util/error.h"
#include "pipeline/util/file_lock.h"

namespace petal {

SweepState update_sweep_state(const SweepFiles& files, const std::function<SweepState()>& fresh,
                              const std::function<void(SweepState&)>& change) {
  std::filesystem::create_directories(files.state_file.parent_path());
  const FileLock lock = FileLock::acquire(files.state_lock);
  std::optional<SweepState> loaded = SweepState::load(files.state_file);
  SweepState state = loaded ? std::move(*loaded) : fresh();
  change(state);
  state.save(files.state_file);
  return state;
}

SweepState update_trial_record(const SweepFiles& files, const std::string& trial_id,
                               const std::function<void(TrialRecord&)>& change) {
  const auto missing = [&]() -> SweepState {
    throw PetalError("sweep state " + files.state_file.string() + " vanished while trial " + trial_id +
                         " was running (moved aside?); run the trial again to start it afresh",
                     {}, kExitEnvironment);
  };
  return update_sweep_state(files, missing, [&](SweepState& state) {
    TrialRecord* record = state.find(trial_id);
    if (!record) {
      throw PetalError("sweep state " + files.state_file.string() + " has no trial " + trial_id +
                           " (it was replaced meanwhile); run the trial again",
                       {}, kExitEnvironment);
    }
    change(*record);
  });
}

}  // namespace petal
